"""Client-side encryption through the CLI: standard age files that the age CLI opens."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import run_job, unique_name
from tests.e2e.helpers import manifests
from tests.fixtures.compare import fingerprint_db


def _keygen(path) -> str:
    subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True)
    return next(
        line.split(": ", 1)[1]
        for line in path.read_text().splitlines()
        if line.startswith("# public key: ")
    )


@pytest.fixture
def keys(tmp_path):
    key, other = tmp_path / "key.txt", tmp_path / "other.txt"
    return {"key": key, "public": _keygen(key), "other": other, "other_public": _keygen(other)}


def test_encrypted_backup_restores_and_opens_by_hand(pg15, sample_db, job_env, backup_dir, keys):
    env = {**job_env, "BACKUP_AGE_RECIPIENTS": f"{keys['public']},{keys['other_public']}"}
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    [record] = manifests(backup_dir)
    assert record["object_key"].endswith(".dump.zst.age")
    assert record["encryption"]["format"] == "age"
    assert len(record["encryption"]["recipients"]) == 2
    manifest_text = json.dumps(record)
    assert keys["public"] not in manifest_text and "AGE-SECRET-KEY" not in manifest_text
    stored = (backup_dir / record["object_key"]).read_bytes()
    assert stored.startswith(b"age-encryption.org/v1\n")

    # docs/restore.md, by hand: age -d -i key.txt X.dump.zst.age | zstd -d | pg_restore --list
    by_hand = subprocess.run(  # noqa: S602 - the exact shell pipeline the docs give
        f"age -d -i {keys['key']} {backup_dir / record['object_key']} | zstd -d "
        "| pg_restore --list",
        shell=True,
        capture_output=True,
        text=True,
        check=False,
    )
    assert by_hand.returncode == 0, by_hand.stderr
    assert "TABLE DATA shop customers" in by_hand.stdout

    # Restore and verify need the identity; the other recipient's key works too.
    no_key = run_job("verify", env=env)
    assert no_key.returncode == 5 and "BACKUP_AGE_IDENTITY" in no_key.stderr
    target = unique_name("decrypted")
    restore_env = {**env, "BACKUP_AGE_IDENTITY_FILE": str(keys["other"])}
    restored = run_job("restore", "--target-db", target, "--force", env=restore_env)
    assert restored.returncode == 0, restored.output
    assert fingerprint_db(pg15, target) == fingerprint_db(pg15, sample_db)
    secret = keys["other"].read_text()
    assert "AGE-SECRET-KEY" not in restored.output and secret not in restored.output


def test_wrong_identity_is_exit_5_and_creates_nothing(pg15, job_env, backup_dir, keys, tmp_path):
    env = {**job_env, "BACKUP_AGE_RECIPIENTS": keys["public"]}
    assert run_job("backup", env=env).returncode == 0
    stranger = tmp_path / "stranger.txt"
    _keygen(stranger)
    env["BACKUP_AGE_IDENTITY_FILE"] = str(stranger)
    before = pg15.databases()
    verify = run_job("verify", env=env)
    assert verify.returncode == 5, verify.output
    restore = run_job("restore", "--target-db", unique_name("nokey"), "--force", env=env)
    assert restore.returncode == 5, restore.output
    assert "hint:" in restore.stderr
    assert "encrypted to other keys" in restore.stderr
    assert pg15.databases() == before
    assert "AGE-SECRET-KEY" not in verify.output + restore.output


def test_passphrase_backups(pg15, sample_db, job_env, backup_dir):
    env = {**job_env, "BACKUP_AGE_PASSPHRASE": "correct horse battery staple"}
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    assert manifests(backup_dir)[0]["encryption"]["recipients"] == ["scrypt"]
    target = unique_name("pass")
    restored = run_job("restore", "--target-db", target, "--force", env=env)
    assert restored.returncode == 0, restored.output
    assert fingerprint_db(pg15, target) == fingerprint_db(pg15, sample_db)
    wrong = run_job("verify", env={**env, "BACKUP_AGE_PASSPHRASE": "wrong passphrase"})
    assert wrong.returncode == 5
    assert "correct horse" not in result.output + restored.output + wrong.output


@pytest.mark.parametrize("text", ["", "# the team's public key goes here\n"])
def test_an_empty_recipients_file_stops_the_backup_and_stores_nothing(
    pg15, sample_db, job_env, backup_dir, tmp_path, text
):
    """Issue 15: the recipients file of a secret that was never filled in is not "no
    recipients": the run stops before the dump (exit 2, naming the variable), and nothing
    plaintext reaches the destination."""
    recipients = tmp_path / "recipients.txt"
    recipients.write_text(text)
    result = run_job("backup", env={**job_env, "BACKUP_AGE_RECIPIENTS_FILE": str(recipients)})
    assert result.returncode == 2, result.output
    assert "BACKUP_AGE_RECIPIENTS_FILE" in result.stderr and "no recipient" in result.stderr
    assert "Traceback" not in result.output
    assert not backup_dir.exists() or not any(p.is_file() for p in backup_dir.rglob("*"))
