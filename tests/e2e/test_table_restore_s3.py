"""Issue 21's "done when", on PostgreSQL 15 and SeaweedFS S3, both formats: a database of 20
tables (one large; a small target with an index, a sequence, a trigger, a foreign key, a
comment and a grant) backed up to S3; the small table restored with ``--table`` into a new
database comes back identical (definition, rows, index, sequence value, trigger, comment,
grant) and alone, its foreign key to a table not chosen left out and named; ``contents``
lists it; ``verify --table --restore-test`` counts its rows and prints the md5 the source's
rows have."""

from __future__ import annotations

import json

import pytest

from backup.restore.table_check import ROWS_MD5
from tests.conftest import run_job, unique_name

TARGET = "shop.orders"
SETUP = """
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'order_reader') THEN
    CREATE ROLE order_reader NOLOGIN;
  END IF;
END $$;
CREATE SCHEMA shop;
CREATE TABLE shop.customers (id int PRIMARY KEY, name text);
INSERT INTO shop.customers SELECT g, 'c' || g FROM generate_series(1, 100) g;
CREATE FUNCTION shop.stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.note := coalesce(NEW.note, 'stamped'); RETURN NEW; END $$;
CREATE TABLE shop.orders (
  id serial PRIMARY KEY,
  customer_id int NOT NULL REFERENCES shop.customers(id),
  amount numeric(10, 2) NOT NULL CHECK (amount >= 0),
  note text
);
CREATE INDEX orders_customer ON shop.orders (customer_id, amount);
CREATE TRIGGER stamp BEFORE INSERT ON shop.orders FOR EACH ROW EXECUTE FUNCTION shop.stamp();
COMMENT ON TABLE shop.orders IS 'one row per order';
GRANT SELECT ON shop.orders TO order_reader;
INSERT INTO shop.orders (customer_id, amount)
  SELECT 1 + g % 100, g * 1.5 FROM generate_series(1, 700) g;
DELETE FROM shop.orders WHERE id > 690;  -- the sequence is ahead of the rows
CREATE TABLE shop.big (id bigint, pad text);
INSERT INTO shop.big SELECT g, md5(g::text) || repeat('y', 100) FROM generate_series(1, 60000) g;
"""
# 17 more small tables: 20 in all.
SETUP += "".join(
    f"CREATE TABLE public.t{i:02} (id int PRIMARY KEY, v text);"
    f"INSERT INTO public.t{i:02} SELECT g, 'v' || g FROM generate_series(1, {10 * i}) g;"
    for i in range(1, 18)
)

_FACTS = {
    "rows": ROWS_MD5.replace("{table}", TARGET),
    "columns": "SELECT attname, format_type(atttypid, atttypmod), attnotnull, "
    "pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a LEFT JOIN pg_attrdef d "
    "ON d.adrelid = a.attrelid AND d.adnum = a.attnum WHERE a.attrelid = 'shop.orders'::regclass "
    "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY attnum",
    "indexes": "SELECT pg_get_indexdef(indexrelid) FROM pg_index "
    "WHERE indrelid = 'shop.orders'::regclass ORDER BY 1",
    "constraints": "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
    "WHERE conrelid = 'shop.orders'::regclass AND contype <> 'f' ORDER BY conname",
    "triggers": "SELECT pg_get_triggerdef(oid) FROM pg_trigger "
    "WHERE tgrelid = 'shop.orders'::regclass AND NOT tgisinternal",
    "table": "SELECT relacl::text, obj_description(oid, 'pg_class') FROM pg_class "
    "WHERE oid = 'shop.orders'::regclass",
    "sequence": "SELECT last_value, is_called FROM shop.orders_id_seq",
}


def facts(cluster, database: str) -> dict[str, object]:
    with cluster.connect(database) as conn:
        return {key: conn.execute(query).fetchall() for key, query in _FACTS.items()}


@pytest.mark.parametrize("fmt", ["custom", "directory"])
def test_one_small_table_out_of_twenty_on_s3(fmt, pg15, s3_server, tmp_path):
    database = pg15.create_database(unique_name("twenty"))
    pg15.execute(database, SETUP)
    bucket = s3_server.create_bucket()
    env = pg15.env(
        database,
        AWS_ACCESS_KEY_ID=s3_server.access_key,
        AWS_SECRET_ACCESS_KEY=s3_server.secret_key,
        AWS_REGION=s3_server.region,
        S3_ENDPOINT_URL=s3_server.endpoint_url,
        BACKUP_DESTINATIONS=f"s3://{bucket}/pg",
        BACKUP_LOCK_DIR=str(tmp_path),
        BACKUP_FORMAT=fmt,
        BACKUP_ROW_COUNTS="exact",
    )
    backup = run_job("backup", env=env)
    assert backup.returncode == 0, backup.output
    source = facts(pg15, database)
    assert source["sequence"] == [(700, True)]

    contents = run_job("contents", "--json", env=env)
    assert contents.returncode == 0, contents.output
    tables = {t["name"]: t for t in json.loads(contents.stdout)["tables"]}
    assert len(tables) == 20 and tables[TARGET]["rows"] == 690
    assert (tables[TARGET]["stored_bytes"] is not None) == (fmt == "directory")

    new = unique_name("orders_back")
    result = run_job("restore", "--table", TARGET, "--target-db", new, "--force", env=env)
    assert result.returncode == 0, result.output
    assert facts(pg15, new) == source
    # Its foreign key's table was neither chosen nor there: left out, and said so.
    assert "orders_customer_id_fkey" in result.stderr and "neither chosen nor in" in result.stderr
    with pg15.connect(new) as conn:
        alone = conn.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
    assert alone == [(TARGET,)]

    verify = run_job("verify", "--table", TARGET, "--restore-test", env=env)
    assert verify.returncode == 0, verify.output
    md5 = source["rows"][0][1]
    assert (
        f"shop.orders: 690 rows (equal to the manifest's exact count), rows md5 {md5}"
        in verify.stdout
    )
    assert not [d for d in pg15.databases() if d.startswith(f"pgbackup_verify_{database}")]
