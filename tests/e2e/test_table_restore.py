"""``restore --table`` end to end on PostgreSQL 15, both formats: a dropped table comes back
exactly (rows, indexes, constraints, sequences and their values, defaults, grants, comments,
policies, triggers); a table that exists is refused; another database; unknown names; a
damaged object (exit 5), an interrupted run or a table of contents read differently the
second time never commit anything; names that need quotes; --schema; --list-tables."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from backup.config import load
from backup.errors import IntegrityError
from backup.postgres import pg_restore_table, toc
from backup.postgres.tools import installed_tools
from tests.conftest import REPO, clean_environ, run_job, unique_name
from tests.e2e.helpers import manifests
from tests.e2e.test_encryption import keys  # noqa: F401 (a fixture)
from tests.fixtures.pgcluster import Cluster, client_bindir

TABLE = '"Odd Schema"."Mixed ""Case"". Table"'
SETUP = f"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'table_reader') THEN
    CREATE ROLE table_reader NOLOGIN;
  END IF;
END $$;
CREATE SCHEMA "Odd Schema";
COMMENT ON SCHEMA "Odd Schema" IS 'odd';
GRANT USAGE ON SCHEMA "Odd Schema" TO table_reader;
CREATE SEQUENCE "Odd Schema".unrelated_seq;
CREATE TABLE public.parent (id int PRIMARY KEY);
INSERT INTO public.parent SELECT generate_series(1, 10);
CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.note := coalesce(NEW.note, 'touched'); RETURN NEW; END $$;
CREATE TABLE {TABLE} (
  id serial PRIMARY KEY,
  ident bigint GENERATED ALWAYS AS IDENTITY (START 100 INCREMENT 5),
  parent_id int REFERENCES public.parent(id),
  "Weird.Col" text NOT NULL DEFAULT 'dflt',
  note text,
  CONSTRAINT positive CHECK (id > 0),
  CONSTRAINT unique_weird UNIQUE ("Weird.Col", id)
);
CREATE INDEX "an index" ON {TABLE} (note) WHERE note IS NOT NULL;
COMMENT ON TABLE {TABLE} IS 'the table''s comment';
COMMENT ON COLUMN {TABLE}."Weird.Col" IS 'a column comment';
COMMENT ON CONSTRAINT positive ON {TABLE} IS 'ids are positive';
GRANT SELECT, INSERT ON {TABLE} TO table_reader;
GRANT USAGE ON SEQUENCE "Odd Schema"."Mixed ""Case"". Table_id_seq" TO table_reader;
ALTER TABLE {TABLE} ENABLE ROW LEVEL SECURITY;
CREATE POLICY "only notes" ON {TABLE} FOR SELECT TO table_reader USING (note IS NOT NULL);
CREATE TRIGGER touch BEFORE INSERT ON {TABLE} FOR EACH ROW EXECUTE FUNCTION public.touch();
INSERT INTO {TABLE} (parent_id, "Weird.Col", note)
  SELECT 1 + g % 10, 'w' || g, CASE WHEN g % 3 = 0 THEN NULL ELSE 'n' || g END
  FROM generate_series(1, 500) g;
CREATE TABLE public.child (id int, mixed_id int REFERENCES {TABLE}(id));
INSERT INTO public.child VALUES (1, 1);
CREATE VIEW public.a_view AS SELECT id FROM {TABLE};
-- After the table in the archive (schema "public" sorts after "Odd Schema"): rows to damage.
CREATE TABLE public.zz_filler (id int, pad text);
INSERT INTO public.zz_filler SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g;
"""

_FACTS = {
    "rows": "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)), count(*) FROM {t} t",
    "columns": "SELECT attname, format_type(atttypid, atttypmod), attnotnull, attidentity::text, "
    "pg_get_expr(d.adbin, d.adrelid), col_description(a.attrelid, a.attnum) "
    "FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
    "WHERE a.attrelid = '{t}'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY attnum",
    "indexes": "SELECT pg_get_indexdef(indexrelid) FROM pg_index "
    "WHERE indrelid = '{t}'::regclass ORDER BY 1",
    "constraints": "SELECT conname, pg_get_constraintdef(oid), "
    "obj_description(oid, 'pg_constraint') FROM pg_constraint "
    "WHERE conrelid = '{t}'::regclass ORDER BY conname",
    "table": "SELECT relacl::text, relrowsecurity, relowner::regrole::text, "
    "obj_description(oid, 'pg_class') FROM pg_class WHERE oid = '{t}'::regclass",
    "policies": "SELECT policyname, cmd, roles::text, qual FROM pg_policies "
    "WHERE schemaname = 'Odd Schema' ORDER BY 1",
    "triggers": "SELECT pg_get_triggerdef(oid) FROM pg_trigger "
    "WHERE tgrelid = '{t}'::regclass AND NOT tgisinternal ORDER BY 1",
    "sequences": "SELECT s.relname, s.relacl::text, q.seqstart, q.seqincrement FROM pg_depend d "
    "JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' "
    "JOIN pg_sequence q ON q.seqrelid = s.oid WHERE d.refobjid = '{t}'::regclass ORDER BY 1",
    "schema": "SELECT nspacl::text, obj_description(oid, 'pg_namespace') FROM pg_namespace "
    "WHERE nspname = 'Odd Schema'",
    "values": 'SELECT last_value, is_called FROM "Odd Schema"."Mixed ""Case"". Table_id_seq" '
    'UNION ALL SELECT last_value, is_called FROM "Odd Schema"."Mixed ""Case"". Table_ident_seq"',
}


def table_facts(cluster: Cluster, database: str) -> dict[str, object]:
    """Everything that makes the table what it is, compared exactly after a restore."""
    with cluster.connect(database) as conn:
        return {
            key: conn.execute(query.replace("{t}", TABLE.replace("'", "''"))).fetchall()
            for key, query in _FACTS.items()
        }


def relation_exists(cluster: Cluster, database: str) -> bool:
    with cluster.connect(database) as conn:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,)).fetchone()[0]


@pytest.fixture(params=["custom", "directory"])
def backed_up(request, pg15, backup_dir, tmp_path) -> tuple[str, dict[str, str], dict]:
    """A database with the table, backed up in each format: (database, env, facts)."""
    database = pg15.create_database(unique_name("tables"))
    pg15.execute(database, SETUP)
    env = pg15.env(
        database,
        BACKUP_DESTINATIONS=f"file://{backup_dir}",
        BACKUP_LOCK_DIR=str(tmp_path),
        BACKUP_COMPRESSION="none",  # so that one byte of the filler's rows can be damaged
        BACKUP_ROW_COUNTS="exact",
    )
    if request.param == "directory":
        env.update(BACKUP_FORMAT="directory", BACKUP_JOBS="2")
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    return database, env, table_facts(pg15, database)


def test_a_dropped_table_comes_back_exactly(pg15, backed_up):
    database, env, facts = backed_up
    pg15.execute(database, f"DROP TABLE {TABLE} CASCADE")
    result = run_job("restore", "--table", TABLE, "--in-place", "--force", env=env)
    assert result.returncode == 0, result.output
    assert table_facts(pg15, database) == facts
    # What belonged to other objects is named, not restored.
    assert "VIEW public a_view" in result.stderr and "child_mixed_id_fkey" in result.stderr
    with pg15.connect(database) as conn:
        assert conn.execute("SELECT to_regclass('public.a_view')").fetchone()[0] is None


def test_a_table_that_exists_is_refused_and_nothing_changes(pg15, backed_up):
    database, env, _ = backed_up
    pg15.execute(database, f"DELETE FROM {TABLE} WHERE id > 10")
    before = table_facts(pg15, database)
    result = run_job("restore", "--table", TABLE, "--in-place", "--force", env=env)
    assert result.returncode == 2, result.output
    assert "already exists" in result.stderr and "--target-db" in result.stderr
    assert table_facts(pg15, database) == before


def test_a_table_moved_aside_as_the_hint_says(pg15, backed_up):
    database, env, facts = backed_up
    pg15.execute(database, f"DELETE FROM {TABLE} WHERE id > 10")
    refused = run_job("restore", "--table", TABLE, "--in-place", "--force", env=env)
    assert refused.returncode == 2 and "SET SCHEMA attic" in refused.stderr
    pg15.execute(database, f"CREATE SCHEMA attic; ALTER TABLE {TABLE} SET SCHEMA attic")
    result = run_job("restore", "--table", TABLE, "--in-place", "--force", env=env)
    assert result.returncode == 0, result.output
    assert table_facts(pg15, database) == facts
    with pg15.connect(database) as conn:
        moved = 'attic."Mixed ""Case"". Table"'
        assert conn.execute(f"SELECT count(*) FROM {moved}").fetchone() == (10,)
        # The view still reads the table it was made on: the one moved aside.
        assert conn.execute("SELECT count(*) FROM public.a_view").fetchone() == (10,)


def test_a_renamed_table_collides_and_nothing_is_kept(pg15, backed_up):
    database, env, _ = backed_up
    pg15.execute(database, f"ALTER TABLE {TABLE} RENAME TO renamed")
    with pg15.connect(database) as conn:
        before = conn.execute('SELECT count(*) FROM "Odd Schema".renamed').fetchone()
    result = run_job("restore", "--table", TABLE, "--in-place", "--force", env=env)
    assert result.returncode == 3, result.output
    assert "already exists" in result.stderr and "SET SCHEMA" in result.stderr
    assert not relation_exists(pg15, database)
    with pg15.connect(database) as conn:
        assert conn.execute('SELECT count(*) FROM "Odd Schema".renamed').fetchone() == before


def _restoring_backend(cluster: Cluster, database: str, what: str) -> int | None:
    """The backend restoring into ``database`` (psql or pg_restore), once it waits for a lock."""
    with cluster.connect() as conn:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s "
            "AND wait_event_type = 'Lock'",
            (database, what),
        ).fetchone()
    return row[0] if row else None


def test_an_interrupted_restore_commits_nothing(pg15, backed_up):
    """SIGTERM while the restore's transaction waits (for a lock on the table its foreign key
    points to, held here): exit 130, and the table never appears, even once the lock is free."""
    database, env, _ = backed_up
    pg15.execute(database, f"DROP TABLE {TABLE} CASCADE")
    what = "pg_restore" if env.get("BACKUP_FORMAT") == "directory" else "psql"
    with pg15.connect(database, autocommit=False) as holder:
        holder.execute("LOCK TABLE public.parent IN ACCESS EXCLUSIVE MODE")
        job = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "entrypoint.py"),
                *("restore", "--table", TABLE, "--in-place", "--force"),
            ],
            env={**clean_environ(), "BACKUP_PROGRESS_SECONDS": "0", **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while _restoring_backend(pg15, database, what) is None:
                assert job.poll() is None, job.communicate()
                assert time.monotonic() < deadline, "the restore never waited for the lock"
                time.sleep(0.05)
            job.send_signal(signal.SIGTERM)
            _, stderr = job.communicate(timeout=60)
        finally:
            if job.poll() is None:
                job.kill()
                job.wait()
        holder.rollback()  # the lock is free: the restore's backend finds its client gone
    assert job.returncode == 130, stderr
    deadline = time.monotonic() + 60
    while _restoring_backend(pg15, database, what) is not None or _sessions(pg15, database, what):
        assert time.monotonic() < deadline, "the restore's backend never ended"
        time.sleep(0.05)
    assert not relation_exists(pg15, database)


def _sessions(cluster: Cluster, database: str, what: str) -> int:
    with cluster.connect() as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            (database, what),
        ).fetchone()[0]


def test_into_another_database_created_fresh(pg15, backed_up):
    _, env, facts = backed_up
    # Alone: the trigger's function, missing there, comes with it (from the archive's
    # dependency graph); its foreign key to public.parent, neither chosen nor there, does not,
    # and is named.
    alone = unique_name("alone")
    result = run_job("restore", "--table", TABLE, "--target-db", alone, "--force", env=env)
    assert result.returncode == 0, result.output
    assert "neither chosen nor in" in result.stderr and "_parent_id_fkey" in result.stderr
    got = table_facts(pg15, alone)
    own = [c for c in facts["constraints"] if "FOREIGN KEY" not in c[1]]
    assert got["constraints"] == own and len(own) < len(facts["constraints"])
    assert {k: v for k, v in got.items() if k != "constraints"} == {
        k: v for k, v in facts.items() if k != "constraints"
    }
    with pg15.connect(alone) as conn:
        assert conn.execute("SELECT to_regprocedure('public.touch()') IS NOT NULL").fetchone()[0]
    # With the table its foreign key points to: identical.
    other = unique_name("other")
    result = run_job(
        "restore",
        "--table",
        "public.parent",
        "--table",
        TABLE,
        "--target-db",
        other,
        "--force",
        env=env,
    )
    assert result.returncode == 0, result.output
    # The schema was created with its comment and grants, and nothing else of it came.
    assert table_facts(pg15, other) == facts
    with pg15.connect(other) as conn:
        assert conn.execute("""SELECT to_regclass('"Odd Schema".unrelated_seq')""").fetchone() == (
            None,
        )
        assert conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname IN ('public', 'Odd Schema') AND c.relkind IN ('r', 'v')"
        ).fetchone() == (2,)  # parent and the table: no child, no view, no filler


def test_an_unknown_name_is_refused_with_close_names(pg15, backed_up):
    database, env, facts = backed_up
    result = run_job("restore", "--table", "public.parnet", "--in-place", "--force", env=env)
    assert result.returncode == 2, result.output
    assert "'public.parnet': the backup holds no such table" in result.stderr
    assert "public.parent" in result.stderr  # the hint's close name
    assert table_facts(pg15, database) == facts


def _damage(path) -> None:
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_damaged_object_is_exit_5_and_commits_nothing(pg15, backed_up, backup_dir):
    database, env, _ = backed_up
    pg15.execute(database, f"DROP TABLE {TABLE} CASCADE")
    record = max(manifests(backup_dir), key=lambda m: m["created_at"])
    if record.get("format") == "directory":
        # Only toc.dat and the table's own file are read: the filler's (the largest) damaged
        # alone does not matter; once every data file is, the table's is too.
        files = sorted(record["files"], key=lambda f: f["size_bytes"])
        _damage(backup_dir / files[-1]["key"])
        dry = run_job("restore", "--table", TABLE, "--in-place", "--dry-run", env=env)
        assert dry.returncode == 0, dry.output
        for entry in files:
            if entry["name"] not in ("toc.dat", files[-1]["name"]) and entry["size_bytes"] > 100:
                _damage(backup_dir / entry["key"])
    else:
        # A byte near the end, in the filler's rows, after everything the table needs:
        # pg_restore has finished before the checksum can say anything.
        _damage(backup_dir / record["object_key"])
    result = run_job("restore", "--table", TABLE, "--in-place", "--force", env=env)
    assert result.returncode == 5, result.output
    assert "sha256 mismatch" in result.stderr
    assert not relation_exists(pg15, database)


def test_dry_run_and_list_tables(pg15, backed_up):
    database, env, _ = backed_up
    listing = run_job("restore", "--list-tables", env=env)
    assert listing.returncode == 0, listing.output
    assert f"  {TABLE}  500 rows\n" in listing.stdout
    assert "  public.zz_filler  20000 rows\n" in listing.stdout
    pg15.execute(database, f"DROP TABLE {TABLE} CASCADE")
    dry = run_job("restore", "--table", 'Mixed "Case". Table', "--in-place", "--dry-run", env=env)
    assert dry.returncode == 0, dry.output
    assert f"Tables:   {TABLE}" in dry.stdout and "TABLE DATA Odd Schema" in dry.stdout
    assert "dry run: nothing was changed" in dry.stdout
    assert not relation_exists(pg15, database)
    unconfirmed = run_job("restore", "--table", TABLE, "--in-place", env=env)
    assert unconfirmed.returncode == 2 and "--force" in unconfirmed.stderr
    assert not relation_exists(pg15, database)


@pytest.mark.parametrize("major", [17, 18])
def test_newer_majors_list_and_restore_the_same_way(major, request, backup_dir, tmp_path):
    """pg_dump 17 and 18 archives (18 may add entries of its own) through their pg_restore."""
    cluster: Cluster = request.getfixturevalue(f"pg{major}")
    database = cluster.create_database(unique_name("tables"))
    cluster.execute(database, SETUP)
    bin_dirs = ":".join(str(client_bindir(m)) for m in (17, 18) if client_bindir(m))
    env = cluster.env(
        database,
        BACKUP_DESTINATIONS=f"file://{backup_dir}",
        BACKUP_LOCK_DIR=str(tmp_path),
        BACKUP_PG_BIN_DIRS=bin_dirs,
    )
    assert run_job("backup", env=env).returncode == 0
    facts = table_facts(cluster, database)
    cluster.execute(database, f"DROP TABLE {TABLE} CASCADE")
    result = run_job("restore", "--table", TABLE, "--in-place", "--force", env=env)
    assert result.returncode == 0, result.output
    assert table_facts(cluster, database) == facts


@pytest.mark.parametrize("fmt", ["custom", "directory"])
def test_an_encrypted_compressed_backup(fmt, pg15, backup_dir, tmp_path, keys):  # noqa: F811
    """age and zstd on the way: the first read stops after the table of contents (the
    decryptor left behind), the second reads it all."""
    database = pg15.create_database(unique_name("tables"))
    pg15.execute(database, SETUP)
    env = pg15.env(
        database,
        BACKUP_DESTINATIONS=f"file://{backup_dir}",
        BACKUP_LOCK_DIR=str(tmp_path),
        BACKUP_AGE_RECIPIENTS=keys["public"],
        BACKUP_AGE_IDENTITY_FILE=str(keys["key"]),
        **(
            {"BACKUP_FORMAT": "directory", "BACKUP_DEDUP_KEY": "0123456789abcdef" * 4}
            if fmt == "directory"
            else {}
        ),
    )
    assert run_job("backup", env=env).returncode == 0
    facts = table_facts(pg15, database)
    pg15.execute(database, f"DROP TABLE {TABLE} CASCADE")
    result = run_job("restore", "--table", TABLE, "--in-place", "--force", env=env)
    assert result.returncode == 0, result.output
    assert table_facts(pg15, database) == facts


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--table", " "], "--table ' ': a table name cannot be empty or blank"),
        (["--table", "t"], "--table and --schema need --target-db DB, or --in-place"),
        (["--schema", "s"], "--table and --schema need --target-db DB, or --in-place"),
        (["--table", "t", "--target-db", "x", "--clean"], "--clean needs --in-place"),
        (["--clean", "--in-place"], "--clean goes with --table or --schema"),
        (["--table", "t", "--target-db", "x", "--drop-old"], "cannot be combined with --drop-old"),
        (["--table", "t", "--globals"], "cannot be combined with --globals"),
        (["--list-tables", "--globals"], "cannot be combined with --globals"),
        (["--schema", ""], "--schema '': a schema name cannot be empty or blank"),
    ],
)
def test_usage_errors_before_anything_is_read(args, message, pg15, backup_dir, tmp_path):
    env = pg15.env(
        "postgres", BACKUP_DESTINATIONS=f"file://{backup_dir}", BACKUP_LOCK_DIR=str(tmp_path)
    )
    result = run_job("restore", *args, "--force", env=env)
    assert result.returncode == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output


def test_a_dropped_schema_comes_back_with_its_tables(pg15, backed_up):
    database, env, facts = backed_up
    pg15.execute(database, 'DROP SCHEMA "Odd Schema" CASCADE')
    result = run_job("restore", "--schema", "Odd Schema", "--in-place", "--force", env=env)
    assert result.returncode == 0, result.output
    assert table_facts(pg15, database) == facts  # the schema's comment and grants included
    with pg15.connect(database) as conn:
        # Only the tables: the schema's standalone sequence is not one.
        assert conn.execute("""SELECT to_regclass('"Odd Schema".unrelated_seq')""").fetchone() == (
            None,
        )


def test_a_table_whose_rows_were_left_out_is_said_to_come_back_empty(pg15, backup_dir, tmp_path):
    database = pg15.create_database(unique_name("tables"))
    pg15.execute(database, SETUP)
    env = pg15.env(
        database,
        BACKUP_DESTINATIONS=f"file://{backup_dir}",
        BACKUP_LOCK_DIR=str(tmp_path),
        BACKUP_EXCLUDE_TABLE_DATA="public.zz_filler",
    )
    assert run_job("backup", env=env).returncode == 0
    listing = run_job("restore", "--list-tables", env=env)
    assert "  public.zz_filler  definition only (its rows were not dumped)\n" in listing.stdout
    pg15.execute(database, "DROP TABLE public.zz_filler")
    dry = run_job("restore", "--table", "zz_filler", "--in-place", "--dry-run", env=env)
    assert dry.returncode == 0, dry.output
    assert "Rows:     none in this backup for public.zz_filler" in dry.stdout
    result = run_job("restore", "--table", "zz_filler", "--in-place", "--force", env=env)
    assert result.returncode == 0, result.output
    with pg15.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM public.zz_filler").fetchone() == (0,)


class _Checked:
    """What ``VerifyingReader.drain`` is to the restore, for an archive read from a file."""

    def __init__(self, source) -> None:
        self.source = source

    def drain(self) -> None:
        while self.source.read(1 << 20):
            pass


def test_a_table_of_contents_that_differs_between_the_two_reads_commits_nothing(pg15, tmp_path):
    """The names were resolved on a first, unchecked read of the head; if the checked read
    begins with other bytes, the restore stops before COMMIT (exit 5)."""
    database = pg15.create_database(unique_name("tables"))
    pg15.execute(database, SETUP)
    archive = tmp_path / "db.dump"
    dumped = subprocess.run(
        [str(pg15.bindir / "pg_dump"), "-Fc", "-f", str(archive), "--dbname", pg15.url(database)],
        capture_output=True,
        check=False,
    )
    assert dumped.returncode == 0, dumped.stderr
    pg15.execute(database, f"DROP TABLE {TABLE} CASCADE")
    config = load(pg15.env(database, BACKUP_DESTINATIONS=f"file://{tmp_path}"))
    [tools] = [t for t in installed_tools([str(pg15.bindir)]) if t.major == 15]
    with archive.open("rb") as first:
        found = pg_restore_table.stream_toc(tools, _Checked(first), first, lambda: None)
    chosen = toc.resolve([TABLE], found.tables)
    selection = toc.select(found.entries, found.tables, chosen)
    other = replace(found, head_sha256="0" * 64)
    with archive.open("rb") as second, pytest.raises(IntegrityError, match="read twice differs"):
        pg_restore_table.restore_stream(
            tools, config.postgres, database, second, _Checked(second), other, selection
        )
    assert not relation_exists(pg15, database)
    with archive.open("rb") as second:
        pg_restore_table.restore_stream(
            tools, config.postgres, database, second, _Checked(second), found, selection
        )
    assert relation_exists(pg15, database)
