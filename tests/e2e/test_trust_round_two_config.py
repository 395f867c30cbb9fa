"""Issue 19, items 6, 7, 8, 9, 10 and 12, through the CLI as users run it: every bad value is
exit 2 naming its variable before anything runs, a blank variable is unset (libpq's and
botocore's too), PGSERVICEFILE works, and LOG_FORMAT=json makes every line JSON."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_job

# -- item 6: half-set S3 credentials -----------------------------------------------------------


def _s3(s3_server, bucket: str, **extra: str) -> dict[str, str]:
    return {
        "BACKUP_DESTINATIONS": f"s3://{bucket}/pg",
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_REGION": s3_server.region,
        "S3_ENDPOINT_URL": s3_server.endpoint_url,
        "BACKUP_RETRY_ATTEMPTS": "1",
        **extra,
    }


@pytest.mark.parametrize(
    ("drop", "extra", "named"),
    [
        ("AWS_ACCESS_KEY_ID", {}, ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")),
        ("AWS_SECRET_ACCESS_KEY", {}, ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")),
        (
            "AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY",
            {"AWS_SESSION_TOKEN": "tok" * 5},
            ("AWS_SESSION_TOKEN",),
        ),
    ],
    ids=["secret-without-id", "id-without-secret", "token-without-secret"],
)
@pytest.mark.parametrize("command", ["check", "backup"])
def test_half_set_s3_credentials_are_exit_2_naming_them(
    pg15, s3_server, tmp_path, command, drop, extra, named
) -> None:
    env = pg15.env("postgres", BACKUP_LOCK_DIR=str(tmp_path), **_s3(s3_server, "never-made"))
    env.update(extra)
    for name in drop.split(","):
        del env[name]
    result = run_job(command, env=env)
    assert result.returncode == 2, result.output
    assert "this is a bug" not in result.output and "Traceback" not in result.output
    for name in named:
        assert name in result.stderr, result.output


def test_a_secret_key_file_without_its_key_id_is_exit_2(pg15, s3_server, tmp_path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(s3_server.secret_key)
    env = pg15.env("postgres", BACKUP_LOCK_DIR=str(tmp_path), **_s3(s3_server, "never-made"))
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    result = run_job("check", env={**env, "AWS_SECRET_ACCESS_KEY_FILE": str(secret)})
    assert result.returncode == 2, result.output
    assert "AWS_ACCESS_KEY_ID" in result.stderr and "AWS_SECRET_ACCESS_KEY" in result.stderr


@pytest.mark.parametrize("variable", ["AWS_DEFAULT_REGION", "AWS_PROFILE"])
def test_a_blank_aws_variable_is_unset(pg15, s3_server, tmp_path, variable) -> None:
    """README: an empty variable counts as unset; botocore reads these itself."""
    bucket = s3_server.create_bucket()
    env = pg15.env("postgres", BACKUP_LOCK_DIR=str(tmp_path), **_s3(s3_server, bucket))
    del env["AWS_REGION"]
    result = run_job("check", env={**env, variable: " "})
    assert result.returncode == 0, result.output


# -- item 7: blank libpq variables -------------------------------------------------------------


def test_blank_libpq_variables_are_unset(job_env, backup_dir) -> None:
    blank = {
        "PGSSLMODE": "",
        "PGTARGETSESSIONATTRS": " ",
        "PGSERVICE": "",
        "PGSERVICEFILE": " ",
        "PGSSLCRL": " ",
        "PGGSSENCMODE": "",
        "PGCHANNELBINDING": "  ",
        "PGAPPNAME": "",
        "PGCONNECT_TIMEOUT": " ",
    }
    backup = run_job("backup", env={**job_env, **blank})
    assert backup.returncode == 0, backup.output
    check = run_job("check", env={**job_env, **blank})
    assert check.returncode == 0, check.output


# -- item 8: PGSERVICEFILE ---------------------------------------------------------------------


def test_a_service_file_names_the_server(pg15, sample_db, backup_dir, tmp_path) -> None:
    services = tmp_path / "pg_service.conf"
    services.write_text(
        f"[source]\nhost={pg15.host}\nport={pg15.port}\ndbname={sample_db}\nuser={pg15.user}\n"
    )
    env = {
        "PGSERVICEFILE": str(services),
        "PGSERVICE": "source",
        "PGPASSWORD": pg15.password,
        "BACKUP_DATABASES": sample_db,
        "BACKUP_DESTINATIONS": f"file://{backup_dir}",
        "BACKUP_LOCK_DIR": str(tmp_path),
    }
    check = run_job("check", env=env)
    assert check.returncode == 0, check.output
    backup = run_job("backup", env=env)
    assert backup.returncode == 0, backup.output
    listing = run_job("list", "--json", env=env)
    assert [b["database"] for b in json.loads(listing.stdout)] == [sample_db]
    unknown = run_job("check", env={**env, "PGSERVICE": "nope"})
    assert unknown.returncode == 3, unknown.output
    assert "nope" in unknown.output


# -- item 9: VERIFY_DATABASE_URL ---------------------------------------------------------------


@pytest.mark.parametrize(
    "query", ["sslmode=bogus", "application_name=a%0Ab", "connect_timeout=abc"]
)
def test_verify_database_url_is_checked_under_its_own_name(
    job_env, pg15, backup_dir, query
) -> None:
    url = f"{pg15.url()}?{query}"
    for command in ("check", "backup"):
        result = run_job(
            command, env={**job_env, "BACKUP_VERIFY": "restore", "VERIFY_DATABASE_URL": url}
        )
        assert result.returncode == 2, result.output
        assert "VERIFY_DATABASE_URL" in result.stderr, result.output
        assert "DATABASE_URL's" not in result.stderr.replace("VERIFY_DATABASE_URL's", "")
        assert pg15.password not in result.output
    assert not list(backup_dir.rglob("*.dump")), "nothing ran"


# -- item 10: BACKUP_LOCK_DIR ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["missing", "file", "proc", "relative"])
def test_check_refuses_the_lock_dir_backup_would_refuse(job_env, tmp_path, kind) -> None:
    paths = {
        "missing": str(tmp_path / "nowhere"),
        "file": str(tmp_path / "a-file"),
        "proc": "/proc",
        "relative": "locks",
    }
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "locks").mkdir()
    env = {**job_env, "BACKUP_LOCK_DIR": paths[kind], "_CWD": str(tmp_path)}
    for command in ("check", "backup"):
        result = run_job(command, env=env)
        assert result.returncode == 2, (command, result.output)
        assert "BACKUP_LOCK_DIR" in result.stderr, (command, result.output)


def test_check_says_the_lock_dir_is_writable(job_env) -> None:
    result = run_job("check", env=job_env)
    assert result.returncode == 0, result.output
    assert f"BACKUP_LOCK_DIR: {job_env['BACKUP_LOCK_DIR']}" in result.stdout


# -- item 12: LOG_FORMAT=json ------------------------------------------------------------------


def _json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not JSON: {line!r}\nin:\n{text}") from None
    return parsed


@pytest.mark.parametrize(
    "bad",
    [
        {"BACKUP_RETENTION_DAYS": "x", "BACKUP_KEEP_MIN": "-1", "S3_SSE": "no", "PGPORT": "0"},
        {"BACKUP_DATABASES": "", "PGDATABASE": ""},
    ],
    ids=["many-problems", "no-database"],
)
@pytest.mark.parametrize("command", ["backup", "check", "status"])
def test_json_logs_make_every_error_line_json(job_env, command, bad) -> None:
    result = run_job(command, env={**job_env, "LOG_FORMAT": "json", **bad})
    assert result.returncode == 2, result.output
    lines = _json_lines(result.stderr)
    errors = [line for line in lines if line["level"] == "error"]
    assert errors and errors[-1]["hint"] and errors[-1]["exit_code"] == 2, lines
    if command != "check":
        _json_lines(result.stdout)


def test_json_logs_make_a_usage_error_json(job_env) -> None:
    result = run_job("backup", "--no-such-option", env={**job_env, "LOG_FORMAT": "json"})
    assert result.returncode == 2, result.output
    [line] = _json_lines(result.stderr)
    assert "--no-such-option" in line["message"] and line["exit_code"] == 2


def test_json_logs_of_a_failed_run(job_env, tmp_path) -> None:
    env = {**job_env, "LOG_FORMAT": "json", "PGPORT": "1", "PGCONNECT_TIMEOUT": "2"}
    result = run_job("backup", env=env)
    assert result.returncode == 3, result.output
    lines = _json_lines(result.stderr)
    assert lines[-1]["level"] == "error" and lines[-1]["exit_code"] == 3 and lines[-1]["hint"]
    _json_lines(result.stdout)
