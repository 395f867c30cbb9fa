"""The one redaction (backup/log.py ``Redactor``) and every path that uses it."""

from __future__ import annotations

import logging
import time

import b2sdk.v2.exception as b2exc
import pytest
from botocore import exceptions as botoexc
from hypothesis import given, settings
from hypothesis import strategies as st

from backup import log
from backup.log import MIN_SECRET_CHARS, REDACTED, RedactingFilter, Redactor
from backup.storage.b2.errors import storage_error as b2_storage_error
from backup.storage.s3.errors import storage_error as s3_storage_error
from tests.fixtures.examples import examples

# Secrets are made of letters and digits; the text around them of characters no secret has and
# no pattern of the redactor reacts to (no ':', '=', '@', '-'): the expected output is exact.
SECRET = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    min_size=MIN_SECRET_CHARS,
    max_size=40,
)
FILLER = st.text(alphabet=" \t\n.,;!?()[]{}/\\'\"#%^*_~|<>éü中文😀\x00\x7f", max_size=30)


@settings(max_examples=examples(300), deadline=None)
@given(
    secrets=st.lists(SECRET, min_size=1, max_size=6),
    pieces=st.lists(st.tuples(FILLER, st.integers(min_value=0, max_value=5)), max_size=12),
    tail=FILLER,
)
def test_every_occurrence_masked_nothing_else_changed(
    secrets: list[str], pieces: list[tuple[str, int]], tail: str
) -> None:
    text = "".join(filler + secrets[i % len(secrets)] for filler, i in pieces) + tail
    expected = "".join(filler + REDACTED for filler, _ in pieces) + tail
    assert Redactor(secrets).redact(text) == expected


@settings(max_examples=examples(300), deadline=None)
@given(
    secrets=st.lists(
        st.text(st.characters(blacklist_characters="*"), min_size=MIN_SECRET_CHARS), max_size=5
    ),
    words=st.lists(st.text(), max_size=10),
    picks=st.lists(st.integers(min_value=0, max_value=9), max_size=10),
)
def test_no_secret_survives_in_any_text(
    secrets: list[str], words: list[str], picks: list[int]
) -> None:
    parts = list(words)
    for at, pick in enumerate(picks):
        if secrets:
            parts.insert(at * 2 % (len(parts) + 1), secrets[pick % len(secrets)])
    out = Redactor(secrets).redact("".join(parts))
    for secret in secrets:
        assert secret not in out


def test_short_secret_is_not_masked_inside_other_text() -> None:
    line = "s3://bucket-b/backups: upload db/db-x.dump failed: AccessDenied: b"
    assert Redactor(["b"]).redact(line) == line
    # A URL's password and a password= pair are masked whatever their length.
    assert Redactor(["b"]).redact("postgresql://u:b@h/db password=b") == (
        f"postgresql://u:{REDACTED}@h/db password={REDACTED}"
    )


def test_cloud_credentials_in_urls_are_masked() -> None:
    """An Azure SAS signature or account key and a GCS resumable session id, wherever they
    appear (an HTTP client's DEBUG line, an error), whether or not the job knows the value."""
    line = (
        "PUT /upload/storage/v1/b/b/o?uploadType=resumable&upload_id=ABCsession123 "
        "https://a.blob.core.windows.net/c/k?sv=2024&sig=Zm9vYmFy%3D&se=x "
        "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0;EndpointSuffix=x"
    )
    out = Redactor([]).redact(line)
    for secret in ("ABCsession123", "Zm9vYmFy%3D", "c2VjcmV0"):
        assert secret not in out
    assert "uploadType=resumable" in out and "AccountName=a;" in out


def test_overlapping_secrets_the_longest_wins() -> None:
    assert (
        Redactor(["abcd", "abcdefgh"]).redact("x abcdefgh y abcd") == f"x {REDACTED} y {REDACTED}"
    )


def _s3_error(message: str) -> botoexc.ClientError:
    return botoexc.ClientError({"Error": {"Code": "AccessDenied", "Message": message}}, "PutObject")


def test_storage_errors_use_the_same_rules() -> None:
    # A one-letter AWS_SECRET_ACCESS_KEY: the message keeps its letters.
    err = s3_storage_error(
        _s3_error("Access Denied to bucket b"),
        url="s3://bucket-b/x",
        bucket="bucket-b",
        action="upload",
        key="db/db.dump",
        secrets=("b",),
    )
    assert "bucket-b" in err.message and "Access Denied to bucket b" in err.message
    # A real secret echoed back is masked, and so are the ones the log knows (setup).
    log.setup(secrets=["pg-password-123"])
    try:
        err = s3_storage_error(
            _s3_error("key wJalrXUtnFEMI echoed; pg-password-123 too"),
            url="s3://bucket/x",
            bucket="bucket",
            action="upload",
            key="k",
            secrets=("wJalrXUtnFEMI",),
        )
        assert "wJalrXUtnFEMI" not in err.message and "pg-password-123" not in err.message
        assert f"key {REDACTED} echoed; {REDACTED} too" in err.message
        b2 = b2_storage_error(
            b2exc.B2Error("bad key K001abcdef for bucket b"),
            url="b2://b/x",
            bucket_name="b",
            action="list",
            key="k",
            secrets=("K001abcdef", "b"),
        )
        assert f"bad key {REDACTED} for bucket b" in b2.message
    finally:
        log.setup()


def test_log_filter_masks_arguments_and_extra_facts() -> None:
    record = logging.LogRecord("x", 20, __file__, 1, "connecting with %s", ("s3cr3t-value",), None)
    record.hint = "retry with s3cr3t-value"  # what ``extra=`` sets; JSON lines print it
    record.seconds = 1.5
    RedactingFilter(["s3cr3t-value"]).filter(record)
    assert record.getMessage() == f"connecting with {REDACTED}"
    assert record.hint == f"retry with {REDACTED}" and record.seconds == 1.5


@pytest.mark.parametrize(
    "filler",
    [
        "a" * 100_000,  # one run of letters: a scheme scanned from each position
        "a" * 50_000 + "://" + "b" * 50_000,  # a scheme, then a user part that never ends
        "ab://c:" * 15_000,
        "password=x " * 9_000,
        "bot1" * 25_000,
    ],
    ids=["letters", "scheme-then-run", "many-schemes", "pairs", "bot"],
)
def test_a_100k_line_is_redacted(filler: str, capsys: pytest.CaptureFixture[str]) -> None:
    secrets = [f"secret-{i:04d}-value" for i in range(12)]
    line = filler + " postgresql://app:pw0rd@db/x " + secrets[3] + " " + filler
    started = time.perf_counter()
    out = Redactor(secrets).redact(line)
    took_s = time.perf_counter() - started
    with capsys.disabled():
        print(f"\nredaction of {len(line):,} characters ({filler[:8]!r}...): {took_s:.3f} s")
    assert f"postgresql://app:{REDACTED}@db/x {REDACTED} " in out
    assert "pw0rd" not in out and secrets[3] not in out
