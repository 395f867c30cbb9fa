"""Backup, list, restore, verify and prune through the CLI, on real PostgreSQL 15."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import REPO, clean_environ, run_job, unique_name
from tests.e2e.helpers import (
    fake_pg_dump,
    manifests,
    processes_running,
    visible_files,
    wait_for_copy,
    wait_for_pg_dump,
)
from tests.fixtures.compare import fingerprint_db


def test_round_trip_restores_every_kind_of_object(pg15, sample_db, job_env, backup_dir):
    result = run_job("backup", env=job_env)
    assert result.returncode == 0, result.output
    assert "dump of" in result.stderr and "committed to" in result.stderr
    files = visible_files(backup_dir)
    assert len(files) == 2
    assert files[0].endswith(".dump.zst") and files[1].endswith(".manifest.json")

    listing = run_job("list", "--json", env=job_env)
    assert listing.returncode == 0, listing.output
    [entry] = json.loads(listing.stdout)
    for field in (
        "name",
        "database",
        "created_at",
        "size_bytes",
        "sha256",
        "compression",
        "encrypted",
        "destination",
    ):
        assert field in entry
    assert entry["database"] == sample_db and entry["compression"] == "zstd"
    assert entry["created_at"].endswith("Z")

    target = unique_name("restored")
    restored = run_job("restore", "latest", "--target-db", target, "--force", env=job_env)
    assert restored.returncode == 0, restored.output
    assert fingerprint_db(pg15, target) == fingerprint_db(pg15, sample_db)


def test_default_command_is_backup_and_table_lists_it(job_env, backup_dir):
    assert run_job(env=job_env).returncode == 0
    table = run_job("list", env=job_env)
    assert table.returncode == 0
    assert "AVAILABLE BACKUPS" in table.stdout
    assert "Total: 1 backup" in table.stdout and "Retention: 30 days" in table.stdout
    name = manifests(backup_dir)[0]["name"]
    assert name in table.stdout


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_other_compressions_round_trip(pg15, sample_db, job_env, backup_dir, compression):
    env = {**job_env, "BACKUP_COMPRESSION": compression}
    assert run_job("backup", env=env).returncode == 0
    suffix = {"gzip": ".dump.gz", "none": ".dump"}[compression]
    assert any(f.endswith(suffix) for f in visible_files(backup_dir))
    target = unique_name("restored")
    assert run_job("restore", "--target-db", target, "--force", env=env).returncode == 0
    assert fingerprint_db(pg15, target) == fingerprint_db(pg15, sample_db)


def test_restore_over_existing_database_keeps_the_old_one(pg15, sample_db, job_env):
    assert run_job("backup", env=job_env).returncode == 0
    before = fingerprint_db(pg15, sample_db)
    pg15.execute(sample_db, "DELETE FROM shop.cache; CREATE TABLE after_backup (x int)")
    result = run_job("restore", "--force", env=job_env)
    assert result.returncode == 0, result.output
    assert fingerprint_db(pg15, sample_db) == before
    kept = [d for d in pg15.databases() if d.startswith(f"{sample_db}_pre_restore_")]
    assert len(kept) == 1
    with pg15.connect(kept[0]) as conn:  # the previous content is still there, renamed
        assert conn.execute("SELECT to_regclass('after_backup')").fetchone()[0] is not None
    pg15.execute("postgres", f'DROP DATABASE "{kept[0]}"')


def test_restore_drop_old_and_in_place(pg15, sample_db, job_env):
    assert run_job("backup", env=job_env).returncode == 0
    before = fingerprint_db(pg15, sample_db)
    pg15.execute(sample_db, "UPDATE shop.customers SET name = 'changed'")
    assert run_job("restore", "--force", "--drop-old", env=job_env).returncode == 0
    assert fingerprint_db(pg15, sample_db) == before
    assert not [d for d in pg15.databases() if "_pre_restore_" in d and sample_db in d]

    pg15.execute(sample_db, "UPDATE shop.customers SET name = 'changed again'")
    result = run_job("restore", "--force", "--in-place", env=job_env)
    assert result.returncode == 0, result.output
    assert fingerprint_db(pg15, sample_db) == before


def test_restore_with_parallel_jobs(pg15, sample_db, job_env):
    assert run_job("backup", env=job_env).returncode == 0
    target = unique_name("parallel")
    result = run_job("restore", "--target-db", target, "--force", "--jobs", "2", env=job_env)
    assert result.returncode == 0, result.output
    assert fingerprint_db(pg15, target) == fingerprint_db(pg15, sample_db)


def test_restore_with_parallel_jobs_failing_in_the_schema_leaves_nothing(pg15, job_env, tmp_path):
    """--jobs restores the schema while the archive spools: when that fails (a table's owner
    is missing here), the restore stops, drops what it created and leaves no spool behind."""
    owner = unique_name("owner")
    database = unique_name("owned")
    pg15.execute("postgres", f'CREATE ROLE "{owner}"')
    pg15.create_database(database)
    pg15.execute(
        database,
        f"CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000); "
        f'ALTER TABLE t OWNER TO "{owner}"',
    )
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    env = {**job_env, "PGDATABASE": database, "TMPDIR": str(spool_dir)}
    assert run_job("backup", env=env).returncode == 0
    pg15.execute(database, "DROP TABLE t")
    pg15.execute("postgres", f'DROP ROLE "{owner}"')
    before = pg15.databases()
    target = unique_name("parallel_failed")
    result = run_job("restore", "--target-db", target, "--force", "--jobs", "2", env=env)
    assert result.returncode == 3, result.output
    assert owner in result.stderr and "Traceback" not in result.output
    assert "pg_restore --section=pre-data exited with status 1" in result.stderr
    assert pg15.databases() == before
    assert list(spool_dir.iterdir()) == []


def test_restore_refusals(pg15, sample_db, job_env):
    assert run_job("backup", env=job_env).returncode == 0
    target = unique_name("refused")
    no_tty = run_job("restore", "--target-db", target, env=job_env)
    assert no_tty.returncode == 2
    assert "error:" in no_tty.stderr and "--force" in no_tty.stderr
    dry = run_job("restore", "--target-db", target, "--dry-run", env=job_env)
    assert dry.returncode == 0 and "dry run: nothing was changed" in dry.stdout
    unknown = run_job("restore", "nope-20200101T000000Z", "--force", env=job_env)
    assert unknown.returncode == 2 and "no complete backup named" in unknown.stderr
    assert target not in pg15.databases()
    assert "Traceback" not in no_tty.output + unknown.output


def test_restore_confirmation_on_a_terminal(pg15, sample_db, job_env):
    """On a terminal the job shows what will be overwritten and wants YES."""
    assert run_job("backup", env=job_env).returncode == 0
    target = unique_name("tty")
    script = (
        "import os, pty, sys\n"
        "pid, fd = pty.fork()\n"
        "if pid == 0:\n"
        f"    os.execv(sys.executable, [sys.executable, {str(REPO / 'entrypoint.py')!r}, "
        f"'restore', '--target-db', {target!r}])\n"
        "out = b''\n"
        "while b'YES' not in out: out += os.read(fd, 1024)\n"
        "os.write(fd, sys.argv[1].encode() + b'\\n')\n"
        "while True:\n"
        "    try:\n"
        "        chunk = os.read(fd, 1024)\n"
        "    except OSError:\n"
        "        break\n"
        "    if not chunk: break\n"
        "    out += chunk\n"
        "_, status = os.waitpid(pid, 0)\n"
        "sys.stdout.write(out.decode('utf-8', 'replace'))\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n"
    )
    env = {**clean_environ(), **job_env}
    answer_no = subprocess.run(
        [sys.executable, "-c", script, "no"], env=env, capture_output=True, text=True, timeout=120
    )
    assert answer_no.returncode == 2
    assert "Server:" in answer_no.stdout and target in answer_no.stdout
    assert target not in pg15.databases()
    answer_yes = subprocess.run(
        [sys.executable, "-c", script, "YES"], env=env, capture_output=True, text=True, timeout=120
    )
    assert answer_yes.returncode == 0, answer_yes.stdout
    assert target in pg15.databases()


def test_wrong_password_is_exit_3_and_never_printed(job_env, backup_dir):
    env = {**job_env, "PGPASSWORD": "wrong-Secret-123"}
    result = run_job("backup", env=env)
    assert result.returncode == 3
    assert "password authentication failed" in result.stderr
    assert "hint:" in result.stderr and "PGPASSWORD" in result.stderr
    assert "wrong-Secret-123" not in result.output
    assert "Traceback" not in result.output
    assert visible_files(backup_dir) == []


def test_missing_database_is_exit_3(job_env, backup_dir):
    env = {**job_env, "BACKUP_DATABASES": "no_such_db"}
    result = run_job("backup", env=env)
    assert result.returncode == 3, result.output
    assert "no_such_db" in result.stderr
    assert visible_files(backup_dir) == []


def test_bad_configuration_lists_every_problem(job_env, backup_dir):
    env = {
        **job_env,
        "BACKUP_COMPRESSION": "lz4",
        "BACKUP_RETENTION_DAYS": "thirty",
        "BACKUP_DESTINATIONS": "ftp://somewhere",
        "PGPORT": "54x",
    }
    result = run_job("backup", env=env)
    assert result.returncode == 2
    for name in ("BACKUP_COMPRESSION", "BACKUP_RETENTION_DAYS", "BACKUP_DESTINATIONS", "PGPORT"):
        assert name in result.stderr
    assert "Traceback" not in result.output
    assert visible_files(backup_dir) == []


def test_secret_file_variables(job_env, tmp_path):
    secret = tmp_path / "pgpass"
    secret.write_text(job_env["PGPASSWORD"] + "\n")
    env = {k: v for k, v in job_env.items() if k != "PGPASSWORD"}
    env["PGPASSWORD_FILE"] = str(secret)
    assert run_job("backup", env=env).returncode == 0
    env["PGPASSWORD_FILE"] = str(tmp_path / "missing")
    missing = run_job("backup", env=env)
    assert missing.returncode == 2 and "PGPASSWORD_FILE" in missing.stderr


def test_database_url_is_accepted_and_its_password_hidden(pg15, sample_db, backup_dir, tmp_path):
    env = {
        "DATABASE_URL": pg15.url(sample_db),
        "BACKUP_DESTINATIONS": f"file://{backup_dir}",
        "BACKUP_LOCK_DIR": str(tmp_path),
        "LOG_LEVEL": "DEBUG",
    }
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    assert pg15.password not in result.output


def test_password_never_in_child_argv(job_env, tmp_path, backup_dir):
    argv_log = tmp_path / "argv.log"
    bindir = fake_pg_dump(
        tmp_path / "bin",
        f'echo "$@" >> {argv_log}\nenv | grep -c PGPASSWORD >> {argv_log}\n'
        f'exec /usr/lib/postgresql/15/bin/pg_dump "$@"',
    )
    env = {**job_env, "BACKUP_PG_BIN_DIRS": str(bindir), "LOG_LEVEL": "DEBUG"}
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    logged = argv_log.read_text()
    assert "-Fc" in logged and job_env["PGPASSWORD"] not in logged
    assert logged.strip().endswith("1")  # the password travelled in the environment
    assert job_env["PGPASSWORD"] not in result.output


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("echo 'pg_dump: error: query failed: boom' >&2; exit 1", "query failed: boom"),
        ("exit 0", "produced no output"),
        ("head -c 300000 /dev/urandom; kill -9 $$", "killed by SIGKILL"),
        ("head -c 300000 /dev/urandom; echo 'pg_dump: error: lost' >&2; exit 1", "lost"),
    ],
    ids=["fails-at-start", "zero-bytes", "dies-mid-stream", "fails-mid-stream"],
)
def test_pg_dump_failures_commit_nothing(job_env, tmp_path, backup_dir, body, expected):
    bindir = fake_pg_dump(tmp_path / "bin", body)
    result = run_job("backup", env={**job_env, "BACKUP_PG_BIN_DIRS": str(bindir)})
    assert result.returncode == 3, result.output
    assert expected in result.stderr
    assert visible_files(backup_dir) == []
    assert not list(backup_dir.rglob("*.partial"))
    assert processes_running(str(bindir)) == []


@pytest.fixture(scope="module")
def big_db(pg15):
    """About 150 MB of table data, so a dump takes long enough to be cut off."""
    name = unique_name("big")
    pg15.create_database(name)
    pg15.execute(
        name,
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) || repeat('x', 250) AS filler "
        "FROM generate_series(1, 500000) g",
    )
    return name


def _start_job(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "entrypoint.py"), "backup"],
        env={**clean_environ(), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def test_server_cutting_off_the_dump_commits_nothing(pg15, big_db, job_env, backup_dir):
    env = {**job_env, "PGDATABASE": big_db, "BACKUP_COMPRESSION": "none"}
    job = _start_job(env)
    backend = wait_for_copy(pg15, big_db)
    pg15.execute("postgres", f"SELECT pg_terminate_backend({backend})")
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == 3, stderr
    assert "pg_dump" in stderr
    assert visible_files(backup_dir) == []
    assert not list(backup_dir.rglob("*.partial"))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signals_stop_children_and_leave_nothing(pg15, big_db, job_env, backup_dir, signum):
    env = {**job_env, "PGDATABASE": big_db, "BACKUP_COMPRESSION": "none"}
    job = _start_job(env)
    wait_for_copy(pg15, big_db)
    job.send_signal(signum)
    _, stderr = job.communicate(timeout=60)
    assert job.returncode == 130, stderr
    assert visible_files(backup_dir) == []
    assert not list(backup_dir.rglob("*.partial"))
    time.sleep(0.5)
    with pg15.connect() as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pg_dump%%' "
            "AND datname = %s",
            (big_db,),
        ).fetchone()[0]
    assert left == 0


def test_second_run_is_skipped_while_one_holds_the_lock(pg15, big_db, job_env, backup_dir):
    env = {**job_env, "PGDATABASE": big_db, "BACKUP_COMPRESSION": "none"}
    # The first run is held inside its dump, whatever the machine's speed: its pg_dump waits
    # for a table that another session has locked, until the second run has been refused.
    with pg15.connect(big_db, autocommit=False) as holder:
        holder.execute("LOCK TABLE big IN ACCESS EXCLUSIVE MODE")
        first = _start_job(env)
        wait_for_pg_dump(pg15, big_db, "wait_event_type = 'Lock'", "waited for the lock")
        second = run_job("backup", env=env)
        holder.rollback()
    assert second.returncode == 7, second.output
    first.communicate(timeout=300)
    assert first.returncode == 0


def _damage(backup_dir, how: str) -> None:
    [dump] = [p for p in backup_dir.rglob("*.dump.zst")]
    data = dump.read_bytes()
    if how == "truncate":
        dump.write_bytes(data[: len(data) // 2])
    else:
        middle = len(data) // 2
        dump.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])


@pytest.mark.parametrize("how", ["truncate", "corrupt"])
def test_damaged_objects_fail_verify_and_restore_with_exit_5(pg15, job_env, backup_dir, how):
    assert run_job("backup", env=job_env).returncode == 0
    assert run_job("verify", env=job_env).returncode == 0
    _damage(backup_dir, how)
    verify = run_job("verify", env=job_env)
    assert verify.returncode == 5, verify.output
    target = unique_name("damaged")
    before = pg15.databases()
    restore = run_job("restore", "--target-db", target, "--force", env=job_env)
    assert restore.returncode == 5, restore.output
    assert pg15.databases() == before  # what the restore created is gone


def test_damaged_object_never_touches_an_existing_target(pg15, sample_db, job_env, backup_dir):
    assert run_job("backup", env=job_env).returncode == 0
    before = fingerprint_db(pg15, sample_db)
    _damage(backup_dir, "corrupt")
    for extra in ([], ["--in-place"]):
        result = run_job("restore", "--force", *extra, env=job_env)
        assert result.returncode == 5, result.output
        assert fingerprint_db(pg15, sample_db) == before
    assert not [d for d in pg15.databases() if d.startswith(sample_db + "_")]


def test_json_logs(job_env):
    result = run_job("backup", env={**job_env, "LOG_FORMAT": "json"})
    assert result.returncode == 0
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert any(line.get("stage") == "dump" and "raw_bytes" in line for line in lines)
    assert all({"time", "level", "message"} <= set(line) for line in lines)


def _age_backups(backup_dir, days_list):
    """Copies of the one real backup, dated ``days`` ago in key and manifest."""
    from datetime import UTC, datetime, timedelta

    [manifest_path] = list(backup_dir.rglob("*.manifest.json"))
    original = json.loads(manifest_path.read_text())
    dump_path = backup_dir / original["object_key"]
    names = []
    for days in days_list:
        when = datetime.now(UTC).replace(microsecond=0) - timedelta(days=days)
        stamp = when.strftime("%Y%m%dT%H%M%SZ")
        db_dir = manifest_path.parent
        encoded = db_dir.name
        name = f"{encoded}-{stamp}"
        key = f"{encoded}/{name}.dump.zst"
        (backup_dir / key).write_bytes(dump_path.read_bytes())
        data = {
            **original,
            "name": name,
            "object_key": key,
            "created_at": when.isoformat().replace("+00:00", "Z"),
            "finished_at": when.isoformat().replace("+00:00", "Z"),
        }
        (db_dir / f"{name}.manifest.json").write_text(json.dumps(data))
        names.append(name)
    return names


def test_prune_uses_manifest_dates_and_keeps_the_minimum(job_env, backup_dir):
    assert run_job("backup", env=job_env).returncode == 0
    old = _age_backups(backup_dir, [40, 50, 60, 70])
    # File times say "new": retention must read the manifests' created_at instead.
    dry = run_job("prune", "--dry-run", env=job_env)
    assert dry.returncode == 0
    assert "would delete" in dry.stderr and "older than 30 days" in dry.stderr
    assert len(manifests(backup_dir)) == 5
    assert "2 would be deleted (2 older than 30 days, no rule keeps it)" in dry.stderr
    result = run_job("prune", env=job_env)
    assert result.returncode == 0, result.output
    # One line per destination, in counts; each backup's reasons only at DEBUG.
    assert (
        f"retention on file://{backup_dir}: 3 kept (3 newest 3 (BACKUP_KEEP_MIN), "
        "1 younger than 30 days), "
        "2 deleted (2 older than 30 days, no rule keeps it)"
    ) in result.stderr, result.stderr
    assert f"delete {old[2]} on" not in result.stderr
    remaining = {m["name"] for m in manifests(backup_dir)}
    # newest 3 are kept (the real one and the 40- and 50-day-old copies), the rest deleted
    assert remaining == {m for m in remaining} and len(remaining) == 3
    assert old[0] in remaining and old[1] in remaining
    assert old[2] not in remaining and old[3] not in remaining
    assert len(visible_files(backup_dir)) == 6  # objects deleted with their manifests


def test_retention_runs_after_success_only(job_env, backup_dir, tmp_path):
    assert run_job("backup", env=job_env).returncode == 0
    _age_backups(backup_dir, [40, 50, 60, 70])
    env = {**job_env, "BACKUP_KEEP_MIN": "1"}
    bindir = fake_pg_dump(tmp_path / "bin", "exit 1")
    failed = run_job("backup", env={**env, "BACKUP_PG_BIN_DIRS": str(bindir)})
    assert failed.returncode == 3
    assert len(manifests(backup_dir)) == 5  # nothing deleted after a failed run
    ok = run_job("backup", env=env)
    assert ok.returncode == 0
    assert len(manifests(backup_dir)) == 2  # two fresh backups; all older than 30 days gone


def test_status_and_check(job_env, backup_dir):
    missing = run_job("status", env=job_env)
    assert missing.returncode == 1 and "missing" in missing.stdout
    assert run_job("backup", env=job_env).returncode == 0
    fresh = run_job("status", "--max-age", "1", env=job_env)
    assert fresh.returncode == 0, fresh.output
    check = run_job("check", env=job_env)
    assert check.returncode == 0, check.output
    assert "pg_dump: 15" in check.stdout and "write, read back, delete ok" in check.stdout
    assert visible_files(backup_dir) == [f for f in visible_files(backup_dir) if "probe" not in f]


def test_check_fails_on_an_unwritable_destination(job_env, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    env = {**job_env, "BACKUP_DESTINATIONS": f"file://{blocked}/backups"}
    result = run_job("check", env=env)
    assert result.returncode == 4, result.output
    assert os.path.isfile(blocked)


def test_gfs_rules_keep_what_they_promise(job_env, backup_dir):
    assert run_job("backup", env=job_env).returncode == 0
    # Dailies for 20 days, then one every 3 days: 40 to 200 days old.
    days = list(range(1, 21)) + list(range(40, 200, 3))
    _age_backups(backup_dir, days)
    env = {
        **job_env,
        "BACKUP_RETENTION_DAYS": "7",
        "BACKUP_KEEP_MIN": "2",
        "BACKUP_KEEP_WEEKLY": "4",
        "BACKUP_KEEP_MONTHLY": "3",
    }
    dry = run_job("prune", "--dry-run", env=env)
    assert dry.returncode == 0, dry.output
    assert "weekly" in dry.stderr and "monthly" in dry.stderr
    assert "would delete" in dry.stderr
    before = manifests(backup_dir)
    assert run_job("prune", env=env).returncode == 0
    kept = manifests(backup_dir)
    week_ago = datetime.now(UTC) - timedelta(days=7)
    # Compared as times, not text: "...T14:13:07Z" sorts after "...T14:13:07" within one second.
    young = [m for m in before if datetime.fromisoformat(m["created_at"]) > week_ago]
    assert len(young) == 7  # the real backup and days 1 to 6
    assert all(m in kept for m in young)
    older_kept = [m for m in kept if m not in young]
    assert 1 <= len(older_kept) <= 4 + 3  # only what the weekly and monthly rules keep
    assert any(
        datetime.fromisoformat(m["created_at"]) < datetime.now(UTC) - timedelta(days=40)
        for m in older_kept
    )  # a monthly one, beyond the weeklies (as times: "...:07Z" sorts after "...:07.5+00:00")
    again = run_job("prune", "--dry-run", env=env)
    assert "would delete" not in again.stderr  # idempotent


def test_progress_lines_during_a_long_dump(pg15, big_db, job_env):
    env = {**job_env, "PGDATABASE": big_db, "BACKUP_PROGRESS_SECONDS": "0.2"}
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    assert "MB dumped" in result.stderr and "MB/s" in result.stderr


def test_compression_threads_write_a_standard_zst_that_restores(pg15, big_db, job_env, backup_dir):
    """BACKUP_COMPRESSION_THREADS=2 (several zstd jobs for 150 MB): still one standard frame
    that ``zstd -d`` reads, and the job's own restore gives the same database back."""
    env = {**job_env, "PGDATABASE": big_db, "BACKUP_COMPRESSION_THREADS": "2"}
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    assert "zstd level 3, 2 compression thread(s)" in result.stderr
    record = next(m for m in manifests(backup_dir) if m["database"] == big_db)
    stored = backup_dir / record["object_key"]
    listed = subprocess.run(  # noqa: S602 - docs/restore.md's recovery by hand
        f"zstd -d -c {stored} | pg_restore --list",
        shell=True,
        capture_output=True,
        text=True,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "TABLE DATA public big" in listed.stdout
    target = unique_name("threads")
    restored = run_job("restore", "--target-db", target, "--force", env=env)
    assert restored.returncode == 0, restored.output
    assert fingerprint_db(pg15, target) == fingerprint_db(pg15, big_db)
    pg15.execute("postgres", f'DROP DATABASE "{target}"')


def test_backups_run_back_to_back_never_share_a_name(job_env, backup_dir):
    """Three runs in a row of a small database (often within one second): three backups, each
    with its own manifest and object, none overwritten."""
    for _ in range(3):
        result = run_job("backup", env=job_env)
        assert result.returncode == 0, result.output
    listed = json.loads(run_job("list", "--json", env=job_env).stdout)
    assert len({entry["name"] for entry in listed}) == 3
    assert len(list(backup_dir.rglob("*.manifest.json"))) == 3
