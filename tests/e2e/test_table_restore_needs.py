"""``restore --table`` on PostgreSQL 15, both formats: what a table uses and the target lacks
(its schema, an enum type, a domain, the functions of its default and check, a sequence its
default takes values from, with that value) comes with it, from the archive's dependency
graph, and what the target has is left alone; ``--in-place --clean`` replaces a table in one
transaction, naming it first, and refuses when a view or another table's key depends on it;
names with quotes, dots, spaces and accents; a name or schema that restores nothing."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_job, unique_name
from tests.e2e.test_table_restore import TABLE, table_facts
from tests.e2e.test_table_restore import backed_up as backed_up  # a fixture

UNICODE = '"Schéma ünï"."Tâble. ""x"" ñ"'
NEEDS = f"""
CREATE SCHEMA "Schéma ünï";
CREATE TYPE "Schéma ünï".mood AS ENUM ('calm', 'angry');
COMMENT ON TYPE "Schéma ünï".mood IS 'moods';
CREATE DOMAIN "Schéma ünï".positive AS int CHECK (VALUE > 0);
CREATE FUNCTION "Schéma ünï".seven() RETURNS int LANGUAGE sql AS 'SELECT 7';
CREATE FUNCTION "Schéma ünï".small(int) RETURNS bool LANGUAGE sql AS 'SELECT $1 < 1000';
CREATE SEQUENCE public.shared_seq START 40;
SELECT nextval('public.shared_seq') FROM generate_series(1, 5);
CREATE TABLE {UNICODE} (
  id int PRIMARY KEY,
  m "Schéma ünï".mood NOT NULL DEFAULT 'calm',
  p "Schéma ünï".positive,
  d int DEFAULT "Schéma ünï".seven(),
  c int CHECK ("Schéma ünï".small(c)),
  o bigint DEFAULT nextval('public.shared_seq')
);
INSERT INTO {UNICODE} (id, p, c) SELECT g, g, g FROM generate_series(1, 50) g;
CREATE TABLE public.other_user_of_seq (o bigint DEFAULT nextval('public.shared_seq'));
"""

_NEEDS_FACTS = {
    "rows": "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)), count(*) FROM {t} t",
    "columns": "SELECT attname, format_type(atttypid, atttypmod), pg_get_expr(d.adbin, d.adrelid) "
    "FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
    "WHERE a.attrelid = '{t}'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY attnum",
    "constraints": "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
    "WHERE conrelid = '{t}'::regclass ORDER BY conname",
    "type": """SELECT enum_range(NULL::"Schéma ünï".mood)::text, """
    """obj_description('"Schéma ünï".mood'::regtype, 'pg_type')""",
    "sequence": "SELECT last_value, is_called FROM public.shared_seq",
}


def needs_facts(cluster, database: str) -> dict[str, object]:
    with cluster.connect(database) as conn:
        return {
            key: conn.execute(query.replace("{t}", UNICODE.replace("'", "''"))).fetchall()
            for key, query in _NEEDS_FACTS.items()
        }


@pytest.fixture(params=["custom", "directory"])
def with_needs(request, pg15, backup_dir, tmp_path) -> tuple[str, dict[str, str], dict]:
    database = pg15.create_database(unique_name("needs"))
    pg15.execute(database, NEEDS)
    env = pg15.env(
        database,
        BACKUP_DESTINATIONS=f"file://{backup_dir}",
        BACKUP_LOCK_DIR=str(tmp_path),
        BACKUP_FORMAT=request.param,
    )
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    return database, env, needs_facts(pg15, database)


def test_what_the_table_uses_comes_with_it(pg15, with_needs):
    _, env, facts = with_needs
    target = pg15.create_database(unique_name("empty"))  # exists, and has none of it
    dry = run_job("restore", "--table", UNICODE, "--target-db", target, "--dry-run", env=env)
    assert dry.returncode == 0, dry.output
    for named in (
        'SCHEMA "Schéma ünï"',
        'TYPE "Schéma ünï".mood',
        'DOMAIN "Schéma ünï".positive',
        'FUNCTION "Schéma ünï".seven()',
        'FUNCTION "Schéma ünï".small(integer)',
        "SEQUENCE public.shared_seq",
    ):
        assert named in dry.stdout, named
    result = run_job("restore", "--table", UNICODE, "--target-db", target, "--force", env=env)
    assert result.returncode == 0, result.output
    # The type with its comment, the sequence with its value: identical.
    assert needs_facts(pg15, target) == facts
    with pg15.connect(target) as conn:  # the sequence's other user did not come
        assert conn.execute("SELECT to_regclass('public.other_user_of_seq')").fetchone() == (None,)


def test_what_the_target_has_is_left_alone(pg15, with_needs):
    _, env, facts = with_needs
    target = pg15.create_database(unique_name("has"))
    pg15.execute(
        target,
        """CREATE SCHEMA "Schéma ünï";
        CREATE TYPE "Schéma ünï".mood AS ENUM ('calm', 'angry');
        COMMENT ON TYPE "Schéma ünï".mood IS 'moods';
        CREATE SEQUENCE public.shared_seq START 40;
        SELECT nextval('public.shared_seq') FROM generate_series(1, 5);""",
    )
    dry = run_job("restore", "--table", UNICODE, "--target-db", target, "--dry-run", env=env)
    assert dry.returncode == 0, dry.output
    assert 'FUNCTION "Schéma ünï".seven()' in dry.stdout
    assert "TYPE " not in dry.stdout.split("Also created", 1)[1].split("\n", 1)[0]
    assert "SEQUENCE public.shared_seq" not in dry.stdout
    result = run_job("restore", "--table", UNICODE, "--target-db", target, "--force", env=env)
    assert result.returncode == 0, result.output
    got = needs_facts(pg15, target)
    assert got["sequence"] == [(44, True)]  # the target's own, left as it was
    assert {k: v for k, v in got.items() if k != "sequence"} == {
        k: v for k, v in facts.items() if k != "sequence"
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--table", '"Schéma ünï"."Table. ""x"" n"'], "the backup holds no such table"),
        (["--table", 'Schéma ünï.Tâble. "x" n'], "did you mean"),
        (["--schema", "Schema uni"], "the backup holds no table in that schema"),
    ],
)
def test_a_name_that_restores_nothing_is_exit_2(args, message, pg15, with_needs):
    _, env, _ = with_needs
    target = unique_name("none")
    result = run_job("restore", *args, "--target-db", target, "--force", env=env)
    assert result.returncode == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert target not in pg15.databases()


def test_unicode_names_by_table_and_by_schema(pg15, with_needs):
    database, env, facts = with_needs
    pg15.execute(database, 'DROP SCHEMA "Schéma ünï" CASCADE')
    by_schema = run_job("restore", "--schema", "Schéma ünï", "--in-place", "--force", env=env)
    assert by_schema.returncode == 0, by_schema.output
    assert needs_facts(pg15, database) == facts
    # Written as it is, unquoted, with its dots and spaces: the archive decides the split.
    other = unique_name("plain")
    plain = 'Schéma ünï.Tâble. "x" ñ'
    result = run_job("restore", "--table", plain, "--target-db", other, "--force", env=env)
    assert result.returncode == 0, result.output
    assert needs_facts(pg15, other)["rows"] == facts["rows"]


def test_in_place_clean_replaces_the_table_in_one_transaction(pg15, backed_up):
    database, env, facts = backed_up
    pg15.execute(database, f"UPDATE {TABLE} SET note = 'oops'")  # the UPDATE without WHERE
    refused = run_job("restore", "--table", TABLE, "--in-place", "--force", env=env)
    assert refused.returncode == 2 and "--clean" in refused.stderr, refused.output
    # A view and another table's foreign key depend on it: a DROP would take them, refused.
    blocked = run_job("restore", "--table", TABLE, "--in-place", "--clean", "--force", env=env)
    assert blocked.returncode == 2, blocked.output
    assert "view a_view" in blocked.stderr and "child_mixed_id_fkey" in blocked.stderr
    pg15.execute(
        database,
        "DROP VIEW public.a_view; ALTER TABLE public.child DROP CONSTRAINT child_mixed_id_fkey",
    )
    dry = run_job("restore", "--table", TABLE, "--in-place", "--clean", "--dry-run", env=env)
    assert dry.returncode == 0, dry.output
    assert f"Replaced: {TABLE} (dropped" in dry.stdout and "Created:" not in dry.stdout
    assert table_facts(pg15, database) != facts
    result = run_job("restore", "--table", TABLE, "--in-place", "--clean", "--force", env=env)
    assert result.returncode == 0, result.output
    assert table_facts(pg15, database) == facts


def test_in_place_into_a_database_that_does_not_exist_is_exit_2(pg15, backed_up):
    _, env, _ = backed_up
    missing = unique_name("missing")
    result = run_job(
        "restore", "--table", TABLE, "--in-place", "--target-db", missing, "--force", env=env
    )
    assert result.returncode == 2, result.output
    assert "does not exist" in result.stderr and missing not in pg15.databases()


def test_verify_table_restore_test_checks_the_manifest_count(pg15, backed_up, backup_dir):
    database, env, _ = backed_up
    ok = run_job("verify", "--table", TABLE, "--restore-test", env=env)
    assert ok.returncode == 0, ok.output
    assert "rows (equal to the manifest's exact count), rows md5 " in ok.stdout
    path = max(backup_dir.rglob("*.manifest.json"), key=lambda p: p.stat().st_mtime)
    record = json.loads(path.read_text())
    key = "Odd Schema." + 'Mixed "Case". Table'
    assert record["row_counts"]["tables"][key] == 500
    record["row_counts"]["tables"][key] = 499
    path.write_text(json.dumps(record))
    wrong = run_job("verify", "--table", TABLE, "--restore-test", env=env)
    assert wrong.returncode == 5, wrong.output
    assert "500 rows restored, the manifest counted 499" in wrong.stderr
    assert not [d for d in pg15.databases() if d.startswith(f"pgbackup_verify_{database}")]
    alone = run_job("verify", "--table", TABLE, env=env)
    assert alone.returncode == 2 and "--table goes with --restore-test" in alone.stderr
