"""``contents`` on PostgreSQL 15, both formats: schemas, tables with the manifest's row counts
(exact or estimates, said which) and stored sizes (directory format), views, functions, large
objects and what was excluded; read from the manifest and the table of contents alone (every
other file of a directory-format backup, or the end of a custom-format object, may be
damaged: it is not read)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_job, unique_name
from tests.e2e.helpers import manifests

SETUP = """
CREATE SCHEMA "Odd Schema";
CREATE TABLE "Odd Schema"."Mixed Case. Tâble" (id serial PRIMARY KEY, note text);
INSERT INTO "Odd Schema"."Mixed Case. Tâble" (note) SELECT 'n' || g FROM generate_series(1, 300) g;
CREATE TABLE public.audit (id int, pad text);
INSERT INTO public.audit SELECT g, repeat('x', 100) FROM generate_series(1, 5000) g;
CREATE TABLE public.big_log (id int);
INSERT INTO public.big_log SELECT generate_series(1, 100);
CREATE TABLE public.zz_filler (id int, pad text);
INSERT INTO public.zz_filler SELECT g, repeat('x', 200) FROM generate_series(1, 40000) g;
CREATE VIEW public.recent AS SELECT id FROM public.audit WHERE id > 10;
CREATE MATERIALIZED VIEW public.totals AS SELECT count(*) FROM public.audit;
CREATE FUNCTION public.add_one(int) RETURNS int LANGUAGE sql AS 'SELECT $1 + 1';
CREATE TYPE public.mood AS ENUM ('calm', 'angry');
SELECT lo_from_bytea(0, 'a large object');
ANALYZE;
"""


@pytest.fixture(params=["custom", "directory"])
def backed_up(request, pg15, backup_dir, tmp_path) -> tuple[dict[str, str], str]:
    database = pg15.create_database(unique_name("contents"))
    pg15.execute(database, SETUP)
    env = pg15.env(
        database,
        BACKUP_DESTINATIONS=f"file://{backup_dir}",
        BACKUP_LOCK_DIR=str(tmp_path),
        BACKUP_FORMAT=request.param,
        BACKUP_COMPRESSION="none",
        BACKUP_ROW_COUNTS="exact",
        BACKUP_EXCLUDE_TABLE_DATA="public.big_log",
    )
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    return env, request.param


def _damage(path) -> None:
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01
    path.write_bytes(bytes(data))


def test_contents_as_json_and_text(backed_up, backup_dir):
    env, fmt = backed_up
    record = max(manifests(backup_dir), key=lambda m: m["created_at"])
    # Only the table of contents is read: damage everything else.
    if fmt == "directory":
        for entry in record["files"]:
            if entry["name"] != "toc.dat" and entry["size_bytes"] > 100:
                _damage(backup_dir / entry["key"])
    else:
        _damage(backup_dir / record["object_key"])  # in the filler's rows, at the end
    result = run_job("contents", "--json", env=env)
    assert result.returncode == 0, result.output
    found = json.loads(result.stdout)
    assert found["name"] == record["name"] and found["format"] == fmt
    assert found["schemas"] == ["Odd Schema", "public"]
    tables = {t["name"]: t for t in found["tables"]}
    assert list(tables) == [
        '"Odd Schema"."Mixed Case. Tâble"',
        "public.audit",
        "public.big_log",
        "public.zz_filler",
    ]
    odd = tables['"Odd Schema"."Mixed Case. Tâble"']
    assert (odd["rows"], odd["rows_exact"], odd["with_data"]) == (300, True, True)
    assert tables["public.audit"]["rows"] == 5000
    assert tables["public.big_log"]["with_data"] is False
    files = {f["name"]: f for f in record.get("files", [])}
    for table in tables.values():
        if fmt == "directory" and table["with_data"]:
            assert table["stored_bytes"] in {f["size_bytes"] for f in files.values()}
        else:
            assert table["stored_bytes"] is None
    assert tables["public.audit"]["stored_bytes"] != odd["stored_bytes"] or fmt == "custom"
    assert found["views"] == ["public.recent"]
    assert found["materialized_views"] == ["public.totals"]
    assert found["functions"] == ["public.add_one(integer)"]
    assert found["types"] == ["public.mood"]
    assert found["sequences"] == ['"Odd Schema"."Mixed Case. Tâble_id_seq"']
    assert found["large_objects"] == 1
    assert found["excluded"]["table_data"] == ["public.big_log"]
    assert found["row_counts"] == "exact"

    text = run_job("contents", env=env)
    assert text.returncode == 0, text.output
    assert "Tables (4; exact row counts, in the dump's snapshot):" in text.stdout
    assert "public.big_log" in text.stdout and "definition only" in text.stdout
    assert "Views (1): public.recent" in text.stdout
    assert "Large objects: 1" in text.stdout
    assert "Tables whose rows were not dumped: public.big_log" in text.stdout
    assert (" stored\n" in text.stdout) == (fmt == "directory")
    # --list-tables says the same about the tables.
    listing = run_job("restore", "--list-tables", env=env)
    assert listing.returncode == 0, listing.output
    assert "  public.audit  5000 rows\n" in listing.stdout


def test_estimates_are_said_to_be_estimates(pg15, backup_dir, tmp_path):
    database = pg15.create_database(unique_name("contents"))
    pg15.execute(database, SETUP)
    env = pg15.env(
        database,
        BACKUP_DESTINATIONS=f"file://{backup_dir}",
        BACKUP_LOCK_DIR=str(tmp_path),
        BACKUP_ROW_COUNTS="estimate",
    )
    assert run_job("backup", env=env).returncode == 0
    found = json.loads(run_job("contents", "--json", env=env).stdout)
    audit = next(t for t in found["tables"] if t["name"] == "public.audit")
    assert found["row_counts"] == "estimate" and audit["rows_exact"] is False
    text = run_job("contents", env=env).stdout
    assert "row counts are the planner's estimates" in text and "about 5000 rows" in text


def test_an_unknown_backup_is_an_error(pg15, backup_dir, tmp_path):
    env = pg15.env(
        "postgres", BACKUP_DESTINATIONS=f"file://{backup_dir}", BACKUP_LOCK_DIR=str(tmp_path)
    )
    result = run_job("contents", "nope-20250101T000000Z", env=env)
    assert result.returncode != 0 and "Traceback" not in result.output
