"""Checks that run inside the container image (scripts/image-test.sh mounts tests/ and runs
this file with the image's own Python, as the image's user): only the standard library and what
the image has.

    python image_checks.py sizes          bytes of the libraries that only gs:// and azure:// use
    python image_checks.py credentials    every credential source the docs promise, loaded

``credentials`` runs ``pgbackup list --json`` once per credential source against local fakes of
the services the source talks to (started here, on 127.0.0.1): S3 with static keys, with
``AWS_SESSION_TOKEN``, from ``AWS_PROFILE`` in a shared credentials file, from a web identity
token (EKS IRSA: ``AWS_ROLE_ARN`` + ``AWS_WEB_IDENTITY_TOKEN_FILE``, STS at
``AWS_ENDPOINT_URL_STS``), from the container credentials endpoint (EKS Pod Identity, ECS:
``AWS_CONTAINER_CREDENTIALS_FULL_URI`` with its authorization token file) and from the instance
metadata service (an instance role, IMDSv2); GCS with a service-account key file (a real RSA
key: google-auth signs a JWT and trades it for a token at the key's ``token_uri``); Azure with a
connection string, an account key and a SAS token. Each fake records what it was sent, and the
check asserts that the storage request carried the credentials that source gave (S3's SigV4
``Credential=`` key and security token, GCS's bearer token, Azure's SharedKey or SAS). B2 keys
go through b2sdk's own simulator (B2's real API is not reachable), through the job's
``B2Storage``: put, list, read back, delete. Exit 0 when every source works, else 1 with the
failures.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path

# The distributions that gs:// and azure:// bring and nothing else needs (computed, not
# listed: their dependencies minus those of every other dependency of the job).
CLOUD_ROOTS = ("google-cloud-storage", "azure-storage-blob")
APP = "pgbackup-job"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requires(name: str) -> set[str]:
    found = set()
    for spec in metadata.distribution(name).requires or []:
        if "extra ==" in spec:
            continue
        dep = _norm(re.match(r"[A-Za-z0-9._-]+", spec)[0])
        try:
            metadata.distribution(dep)
        except metadata.PackageNotFoundError:
            continue  # a dependency for another Python or platform
        found.add(dep)
    return found


def _closure(roots: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += _requires(name)
    return seen


def _dist_bytes(name: str) -> int:
    total = 0
    for file in metadata.distribution(name).files or []:
        path = Path(file.locate())
        # slim_venv.py replaced module.py by module.pyc
        for candidate in (path, path.with_name(path.name + "c")):
            if candidate.is_file() and not candidate.is_symlink():
                total += candidate.stat().st_size
                break
    return total


def sizes() -> int:
    everything = _requires(APP)
    others = _closure(everything - set(CLOUD_ROOTS))
    cloud = sorted(_closure(set(CLOUD_ROOTS)) - others)
    cloud_bytes = sum(_dist_bytes(name) for name in cloud)
    venv_bytes = sum(_dist_bytes(name) for name in _closure(everything | {_norm(APP)}))
    print(f"cloud_bytes={cloud_bytes} venv_bytes={venv_bytes} cloud={','.join(cloud)}")
    return 0


# ----------------------------------------------------------------------------- fakes

AK, SK, SESSION = "ASIAIMAGETEST", "secret-image-test", "session-token-image-test"
BUCKET, CONTAINER, ACCOUNT = "bucket1", "backups", "devstoreaccount1"
GCS_TOKEN = "ya29.image-test"
CONTAINER_AUTH = "pod-identity-token"


class Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[dict] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def seen(self, **match: str) -> list[dict]:
        return [r for r in self.requests if all(r.get(k) == v for k, v in match.items())]


class Handler(BaseHTTPRequestHandler):
    server: Recorder

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, status: int, body: str, ctype: str = "application/xml") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self, kind: str, body: bytes = b"") -> dict:
        entry = {
            "kind": kind,
            "method": self.command,
            "path": self.path,
            "authorization": self.headers.get("Authorization", ""),
            "token": self.headers.get("X-Amz-Security-Token", ""),
            "body": body.decode(errors="replace"),
        }
        self.server.requests.append(entry)
        return entry

    def do_PUT(self) -> None:
        if self.path == "/latest/api/token":  # IMDSv2 session
            self._record("imds")
            self._answer(200, "imds-session", "text/plain")
        else:
            self._answer(404, "")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        form = urllib.parse.parse_qs(body.decode())
        if form.get("Action") == ["AssumeRoleWithWebIdentity"]:
            self._record("sts", body)
            self._answer(200, _STS_ANSWER)
        elif self.path == "/token":  # Google's OAuth token endpoint (the key's token_uri)
            self._record("oauth", body)
            answer = {"access_token": GCS_TOKEN, "expires_in": 3600, "token_type": "Bearer"}
            self._answer(200, json.dumps(answer), "application/json")
        else:
            self._answer(404, "")

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        creds = {"AccessKeyId": AK, "SecretAccessKey": SK, "Token": SESSION}
        creds["Expiration"] = "2099-01-01T00:00:00Z"
        if path == "/creds":  # container credentials (ECS, EKS Pod Identity)
            self._record("container")
            self._answer(200, json.dumps(creds), "application/json")
        elif path == "/latest/meta-data/iam/security-credentials/":
            self._record("imds")
            self._answer(200, "image-test-role", "text/plain")
        elif path == "/latest/meta-data/iam/security-credentials/image-test-role":
            self._record("imds")
            imds = {"Code": "Success", "Type": "AWS-HMAC", **creds}
            self._answer(200, json.dumps(imds), "application/json")
        elif path.startswith(f"/storage/v1/b/{BUCKET}/o"):
            self._record("gcs")
            self._answer(200, '{"kind": "storage#objects"}', "application/json")
        elif path == f"/{ACCOUNT}/{CONTAINER}" and "comp=list" in query:
            self._record("azure")
            self._answer(200, _AZURE_LIST.format(url=self.server.url))
        elif path == f"/{BUCKET}" or path == f"/{BUCKET}/":
            self._record("s3")
            if "uploads" in urllib.parse.parse_qs(query, keep_blank_values=True):
                self._answer(200, _S3_UPLOADS)
            else:
                self._answer(200, _S3_LIST)
        else:
            self._record("unknown")
            self._answer(404, "")


_STS_ANSWER = f"""<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>{AK}</AccessKeyId>
<SecretAccessKey>{SK}</SecretAccessKey><SessionToken>{SESSION}</SessionToken>
<Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>
<SubjectFromWebIdentityToken>system:serviceaccount:backups:pgbackup</SubjectFromWebIdentityToken>
<AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/pgbackup/image-test</Arn>
<AssumedRoleId>AROAIMAGETEST:image-test</AssumedRoleId></AssumedRoleUser>
</AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"""
_S3_LIST = f"""<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>{BUCKET}</Name>
<Prefix></Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>
</ListBucketResult>"""
_S3_UPLOADS = f"""<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
<Bucket>{BUCKET}</Bucket><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>"""
_AZURE_LIST = """<?xml version="1.0" encoding="utf-8"?>
<EnumerationResults ServiceEndpoint="{url}/devstoreaccount1/" ContainerName="backups">
<Blobs /><NextMarker /></EnumerationResults>"""


# ----------------------------------------------------------------------------- the checks


def _pgbackup(env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    return subprocess.run(
        ["pgbackup", "list", "--json"],
        env={**base, "PGDATABASE": "app", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _service_account_key(path: Path, token_uri: str) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "image-test",
        "private_key_id": "1",
        "private_key": pem,
        "client_email": "pgbackup@image-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(info))


def _jwt_header(assertion: str) -> dict:
    head = assertion.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))


def credentials() -> int:
    fake = Recorder()
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    work = Path(tempfile.mkdtemp(prefix="credentials-"))
    s3 = {
        "BACKUP_DESTINATIONS": f"s3://{BUCKET}/pg",
        "S3_ENDPOINT_URL": fake.url,
        "AWS_REGION": "us-east-1",
        # nothing else may answer for an instance role than the fake
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(work / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(work / "none"),
    }
    (work / "credentials").write_text(
        f"[default]\naws_access_key_id = WRONG\naws_secret_access_key = wrong\n\n"
        f"[backups]\naws_access_key_id = {AK}\naws_secret_access_key = {SK}\n"
    )
    (work / "web-identity-token").write_text("eyJ.web-identity.token")
    (work / "pod-identity-token").write_text(CONTAINER_AUTH)
    key_file = work / "gcs-key.json"
    _service_account_key(key_file, f"{fake.url}/token")
    azure_key = base64.b64encode(b"image-test-azure-key").decode()
    azure_endpoint = f"{fake.url}/{ACCOUNT}"
    cases: list[tuple[str, dict[str, str], str, str]] = [
        # (name, environment, the fake's record kind that must show the credentials, token)
        ("S3 static keys", {"AWS_ACCESS_KEY_ID": AK, "AWS_SECRET_ACCESS_KEY": SK}, "s3", ""),
        (
            "S3 temporary keys (AWS_SESSION_TOKEN)",
            {"AWS_ACCESS_KEY_ID": AK, "AWS_SECRET_ACCESS_KEY": SK, "AWS_SESSION_TOKEN": SESSION},
            "s3",
            SESSION,
        ),
        (
            "S3 AWS_PROFILE in a shared credentials file",
            {"AWS_PROFILE": "backups", "AWS_SHARED_CREDENTIALS_FILE": str(work / "credentials")},
            "s3",
            "",
        ),
        (
            "S3 web identity (EKS IRSA)",
            {
                "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/pgbackup",
                "AWS_WEB_IDENTITY_TOKEN_FILE": str(work / "web-identity-token"),
                "AWS_ROLE_SESSION_NAME": "image-test",
                "AWS_ENDPOINT_URL_STS": fake.url,
            },
            "s3",
            SESSION,
        ),
        (
            "S3 container credentials (EKS Pod Identity, ECS)",
            {
                "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"{fake.url}/creds",
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(work / "pod-identity-token"),
            },
            "s3",
            SESSION,
        ),
        (
            "S3 instance role (IMDSv2)",
            {
                "AWS_EC2_METADATA_DISABLED": "false",
                "AWS_EC2_METADATA_SERVICE_ENDPOINT": fake.url,
            },
            "s3",
            SESSION,
        ),
        (
            "GCS service-account key file",
            {
                "BACKUP_DESTINATIONS": f"gs://{BUCKET}/pg",
                "GOOGLE_APPLICATION_CREDENTIALS": str(key_file),
                "GCS_ENDPOINT_URL": fake.url,
            },
            "gcs",
            "",
        ),
        (
            "Azure connection string",
            {
                "BACKUP_DESTINATIONS": f"azure://{CONTAINER}/pg",
                "AZURE_STORAGE_CONNECTION_STRING": f"DefaultEndpointsProtocol=http;"
                f"AccountName={ACCOUNT};AccountKey={azure_key};BlobEndpoint={azure_endpoint};",
            },
            "azure",
            "",
        ),
        (
            "Azure account key",
            {
                "BACKUP_DESTINATIONS": f"azure://{CONTAINER}/pg",
                "AZURE_STORAGE_ACCOUNT": ACCOUNT,
                "AZURE_STORAGE_KEY": azure_key,
                "AZURE_STORAGE_ENDPOINT": azure_endpoint,
            },
            "azure",
            "",
        ),
        (
            "Azure SAS token",
            {
                "BACKUP_DESTINATIONS": f"azure://{CONTAINER}/pg",
                "AZURE_STORAGE_ACCOUNT": ACCOUNT,
                "AZURE_STORAGE_SAS_TOKEN": "sv=2024-11-04&ss=b&srt=co&sp=rwdlac&sig=imagetest",
                "AZURE_STORAGE_ENDPOINT": azure_endpoint,
            },
            "azure",
            "",
        ),
    ]
    failures = []
    for name, extra, kind, token in cases:
        fake.requests.clear()
        env = {**(s3 if kind == "s3" else {}), **extra}
        result = _pgbackup(env)
        problem = _judge(fake, result, kind, token, name)
        print(f"{'ok  ' if not problem else 'FAIL'} {name}{': ' + problem if problem else ''}")
        if problem:
            failures.append(name)
    problem = _b2()
    verdict = f"FAIL B2 keys (b2sdk's simulator): {problem}" if problem else "ok   B2 keys"
    print(verdict)
    if problem:
        failures.append("B2")
    fake.shutdown()
    if failures:
        print(f"credential sources that failed in the image: {', '.join(failures)}")
        return 1
    return 0


def _judge(
    fake: Recorder, result: subprocess.CompletedProcess, kind: str, token: str, name: str
) -> str:
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["(no output)"])[-3:]
        return f"pgbackup list exited {result.returncode}: {' | '.join(tail)}"
    calls = fake.seen(kind=kind)
    if not calls:
        return f"no request reached the fake {kind} service"
    auth = calls[0]["authorization"]
    if kind == "s3":
        if f"Credential={AK}/" not in auth:
            return f"S3 request not signed with the source's key: {auth[:60]!r}"
        if calls[0]["token"] != token:
            return f"security token {calls[0]['token']!r}, expected {token!r}"
        if "web identity" in name:
            sts = fake.seen(kind="sts")
            form = urllib.parse.parse_qs(sts[0]["body"]) if sts else {}
            if form.get("WebIdentityToken") != ["eyJ.web-identity.token"]:
                return f"STS was not asked with the token file's token: {form}"
        if (
            "container" in name
            and fake.seen(kind="container")[0]["authorization"] != CONTAINER_AUTH
        ):
            return "the container endpoint did not get the authorization token file's token"
        if "instance" in name and not fake.seen(kind="imds"):
            return "the instance metadata service was not asked"
    elif kind == "gcs":
        oauth = fake.seen(kind="oauth")
        form = urllib.parse.parse_qs(oauth[0]["body"]) if oauth else {}
        assertion = (form.get("assertion") or [""])[0]
        if not assertion or _jwt_header(assertion).get("alg") != "RS256":
            return f"no RS256-signed JWT was traded for a token: {form}"
        if auth != f"Bearer {GCS_TOKEN}":
            return f"GCS request without the token: {auth[:40]!r}"
    elif kind == "azure":
        if "sig=imagetest" in calls[0]["path"]:
            return ""
        if not auth.startswith(f"SharedKey {ACCOUNT}:"):
            return f"Azure request neither SharedKey-signed nor with the SAS: {auth[:40]!r}"
    return ""


def _b2() -> str:
    from b2sdk.v2 import B2Api, B2HttpApiConfig, InMemoryAccountInfo, RawSimulator

    from backup.storage.b2.storage import B2Storage

    api = B2Api(InMemoryAccountInfo(), api_config=B2HttpApiConfig(_raw_api_class=RawSimulator))
    key_id, key = api.session.raw_api.create_account()
    api.authorize_account("production", key_id, key)
    api.create_bucket("image-test", "allPrivate")
    storage = B2Storage(
        api, "image-test", "pg", authorize=lambda: api.authorize_account("production", key_id, key)
    )
    import io

    data = os.urandom(3000)
    try:
        storage.put("db/one.bin", io.BytesIO(data))
        keys = [info.key for info in storage.list("db/")]
        with storage.open("db/one.bin") as stream:
            back = stream.read()
        storage.delete(["db/one.bin"])
    except Exception as err:  # reported, not raised: the other checks still run
        return f"{type(err).__name__}: {err}"
    if back != data or not any(k.endswith("one.bin") for k in keys):
        return f"read back {len(back)} bytes, listed {keys}"
    return ""


if __name__ == "__main__":
    commands = {"sizes": sizes, "credentials": credentials}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        print(f"usage: {sys.argv[0]} {'|'.join(commands)}", file=sys.stderr)
        sys.exit(2)
    sys.exit(commands[sys.argv[1]]())
