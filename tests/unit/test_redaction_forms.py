"""Issue 19 item 2: a secret is redacted in every form an error text can show it: as is, escaped
as Python's repr/ascii of str or bytes and as JSON, percent-encoded, base64-encoded inside a
longer value (basic auth ``user:password``), and each line (9+ characters) of a secret that spans
lines. The expected forms are made here by the real encoders, not by the code under test."""

from __future__ import annotations

import base64
import binascii
import json
import re
from urllib.parse import quote, quote_plus

import b2sdk.v2.exception as b2exc
from botocore import exceptions as botoexc
from hypothesis import given, settings
from hypothesis import strategies as st

from backup.log import Redactor
from backup.storage.azure.errors import storage_error as azure_storage_error
from backup.storage.b2.errors import storage_error as b2_storage_error
from backup.storage.gcs.errors import storage_error as gcs_storage_error
from backup.storage.s3.errors import storage_error as s3_storage_error
from tests.fixtures.examples import examples

# Secrets as operators' files hold them: newlines, quotes, backslashes, unicode, controls.
NASTY = st.sampled_from(list("\n\r\t'\"\\%+/=:@ éü中😀\x00\x7f\x1b"))
SECRET = st.lists(
    st.one_of(st.characters(min_codepoint=33, max_codepoint=126), NASTY),
    min_size=10,
    max_size=40,
).map("".join)
MIN_LINE_CHARS = 9
"""A line of a multi-line secret longer than 8 characters is masked on its own."""
CONTEXT = st.text(alphabet=" abcXYZ019.,'\"\\é\n", max_size=20)


def _forms(secret: str, user: str) -> dict[str, str]:
    """Each way a library writes ``secret`` into a text, from the real encoders."""
    return {
        "as is": secret,
        "str repr": repr(secret),
        "str repr in text": repr(f"x'\"{secret}"),
        "ascii": ascii(secret),
        "bytes repr": repr(secret.encode()),
        "bytes repr in text": repr(f"'\"{secret}".encode()),
        "json": json.dumps(secret),
        "json unicode": json.dumps({"k": secret}, ensure_ascii=False),
        "percent": quote(secret, safe=""),
        "percent path": quote(secret),
        "form": quote_plus(secret),
        "basic auth": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode(),
        "urlsafe base64": base64.urlsafe_b64encode(f"{user}:{secret}".encode()).decode(),
    }


def _lines(secret: str) -> list[str]:
    return [line.strip() for line in secret.splitlines() if len(line.strip()) >= MIN_LINE_CHARS]


def _leaks(secret: str, text: str) -> list[str]:
    """The forms of ``secret`` found in ``text``: the secret, each long line of it, any of
    their escapes or encodings, and any base64 run of ``text`` that decodes to one of them."""
    found = []
    for piece in [secret, *_lines(secret)]:
        for name, form in _forms(piece, "u").items():
            if name.startswith(("basic", "urlsafe")):
                continue  # the encoding of a whole value; checked by decoding below
            if name.endswith("in text"):
                continue  # the surrounding text is not in ``text``
            core = form[2:-1] if name.startswith("bytes") else form
            core = core[1:-1] if name in ("str repr", "ascii", "json") else core
            if core and core in text:
                found.append(f"{name} of {piece!r}")
        data = piece.encode()
        for run in re.findall(r"[A-Za-z0-9+/_-]{8,}", text):
            for skip in range(4):
                chunk = run[skip:].replace("-", "+").replace("_", "/")
                chunk = chunk[: len(chunk) // 4 * 4]
                try:
                    if data in base64.b64decode(chunk):
                        found.append(f"base64 of {piece!r}")
                except binascii.Error:
                    pass
    return found


@settings(max_examples=examples(150), deadline=None)
@given(secret=SECRET, user=st.text(alphabet="abcdefgh", max_size=7), before=CONTEXT, after=CONTEXT)
def test_every_form_of_a_secret_is_masked(secret: str, user: str, before: str, after: str) -> None:
    redactor = Redactor([secret])
    for name, form in _forms(secret, user).items():
        out = redactor.redact(f"{before}{form}{after}")
        assert not _leaks(secret, out), (name, out)


@settings(max_examples=examples(100), deadline=None)
@given(
    head=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=9, max_size=30),
    tail=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=9, max_size=30),
    before=CONTEXT,
)
def test_each_line_of_a_secret_that_spans_lines_is_masked_alone(
    head: str, tail: str, before: str
) -> None:
    secret = f"{head}\n{tail}\n"
    redactor = Redactor([secret.strip()])
    for line in (head, tail):
        out = redactor.redact(f"{before}invalid value {line!r} at line 2")
        assert line not in out, out


def test_the_header_error_of_a_two_line_session_token() -> None:
    """What http.client raised for a two-line AWS_SESSION_TOKEN_FILE: the bytes repr."""
    token = "FwoGZXIvYXdzEBYaDH7token\nsecond-line-of-it"
    err = ValueError(f"Invalid header value {token.encode()!r}")
    message = s3_storage_error(
        err, url="s3://b/p", bucket="b", action="upload", key="k", secrets=(token,)
    ).message
    assert "second-line" not in message and "FwoGZXIv" not in message, message


@settings(max_examples=examples(40), deadline=None)
@given(secret=SECRET)
def test_every_backends_error_text_masks_every_form(secret: str) -> None:
    """The error paths of S3, B2, GCS and Azure, each fed an exception whose text quotes the
    secret in each form a library might write it."""
    for name, form in _forms(secret, "account").items():
        errors = [
            s3_storage_error(
                ValueError(f"Invalid header value {form}"),
                url="s3://b/p",
                bucket="b",
                action="upload",
                key="k",
                secrets=(secret,),
            ),
            s3_storage_error(
                botoexc.ClientError({"Error": {"Code": "InvalidToken", "Message": form}}, "Put"),
                url="s3://b/p",
                bucket="b",
                action="upload",
                key="k",
                secrets=(secret,),
            ),
            b2_storage_error(
                b2exc.B2Error(f"unauthorized {form}"),
                url="b2://b/p",
                bucket_name="b",
                action="upload",
                key="k",
                secrets=(secret,),
            ),
            gcs_storage_error(
                ValueError(f"credentials {form}"),
                url="gs://b/p",
                bucket="b",
                action="upload",
                key="k",
                secrets=(secret,),
            ),
            azure_storage_error(
                ValueError(f"AuthenticationFailed {form}"),
                url="azure://c/p",
                container="c",
                action="upload",
                key="k",
                secrets=(secret,),
            ),
        ]
        for error in errors:
            assert not _leaks(secret, error.message + " " + error.hint), (name, error.message)


def test_a_gcs_key_files_private_key_is_a_secret(tmp_path) -> None:
    """GOOGLE_APPLICATION_CREDENTIALS' private key is masked too, line by line."""
    from backup.config import load

    body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"
    key = f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"
    path = tmp_path / "key.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "client_email": "job@project.iam.gserviceaccount.com",
                "private_key": key,
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    config = load(
        {"BACKUP_DESTINATIONS": "gs://bucket/pg", "GOOGLE_APPLICATION_CREDENTIALS": str(path)}
    )
    redactor = Redactor(config.secrets())
    for text in (f"bad key {key!r}", f"line 2: {body}", json.dumps({"private_key": key})):
        assert not _leaks(key.strip(), redactor.redact(text)), text
