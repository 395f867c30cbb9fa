"""Issue 23 part 3: packs. A database of 300 tiny tables and 2 larger ones in the directory
format, on a local folder and on SeaweedFS S3: the tiny tables' files go into a few pack
objects (far fewer objects than files), the large ones stay one content object each; the
restore is identical; ``restore --table`` of a tiny table reads toc.dat and that table's range
alone; ``verify`` finds a byte flipped inside a pack and names the file; the garbage
collection keeps the packs a manifest still names and removes the others."""

from __future__ import annotations

import io
import itertools
import json
import re
import time
from datetime import UTC, datetime, timedelta

import pytest

from backup import manifest
from backup.config import load
from backup.dirformat.fetch import fetch_folder
from backup.manifest import Scope
from backup.retention import prune
from backup.storage import open_all
from tests.conftest import run_job, unique_name
from tests.e2e.test_encryption import keys  # noqa: F401 (a fixture)
from tests.fixtures.compare import fingerprint_db

TINY = 300
SETUP = f"""
DO $$ BEGIN
  FOR i IN 1..{TINY} LOOP
    EXECUTE format('CREATE TABLE public.tiny_%s (id int PRIMARY KEY, v text)', lpad(i::text, 4, '0'));
    EXECUTE format('INSERT INTO public.tiny_%s SELECT g, %L || g FROM generate_series(1, %s) g',
                   lpad(i::text, 4, '0'), 'row', 1 + i % 7);
  END LOOP;
END $$;
CREATE TABLE public.large_a (id bigint, pad text);
INSERT INTO public.large_a SELECT g, md5(g::text) || repeat('a', 100) FROM generate_series(1, 20000) g;
CREATE TABLE public.large_b (id bigint, pad text);
INSERT INTO public.large_b SELECT g, md5((g * 7)::text) || repeat('b', 90) FROM generate_series(1, 20000) g;
"""  # noqa: E501


@pytest.fixture(params=["local", "s3"])
def packed_env(request, pg15, tmp_path):
    database = unique_name("packs")
    pg15.create_database(database)
    pg15.execute(database, SETUP)
    if request.param == "local":
        root = tmp_path / "backups"
        root.mkdir()
        where = {"BACKUP_DESTINATIONS": f"file://{root}"}
    else:
        server = request.getfixturevalue("s3_server")
        where = {
            "AWS_ACCESS_KEY_ID": server.access_key,
            "AWS_SECRET_ACCESS_KEY": server.secret_key,
            "AWS_REGION": server.region,
            "S3_ENDPOINT_URL": server.endpoint_url,
            "BACKUP_DESTINATIONS": f"s3://{server.create_bucket()}/pg",
        }
    env = pg15.env(
        database,
        BACKUP_LOCK_DIR=str(tmp_path),
        BACKUP_FORMAT="directory",
        BACKUP_JOBS="2",
        **where,
    )
    return database, env


def _one(cluster, database: str, sql: str):
    with cluster.connect(database) as conn:
        return conn.execute(sql).fetchone()


def _stored(env: dict[str, str], database: str):
    [storage] = open_all(load(env).storage)
    records = []
    for info in storage.list(f"{database}/"):
        if info.key.endswith(".manifest.json"):
            records.append(manifest.read(storage, info.key))
    objects = {o.key: o for o in storage.list(manifest.objects_prefix(database))}
    return storage, sorted(records, key=lambda m: m.created_at), objects


def test_tiny_tables_go_into_packs_and_restore(pg15, packed_env, tmp_path):
    database, env = packed_env
    result = run_job("backup", env=env)
    assert result.returncode == 0, result.output
    storage, [m], objects = _stored(env, database)
    assert m.format_version == manifest.PACKED_FORMAT_VERSION
    packed = [f for f in m.files if "offset" in f]
    alone = [f for f in m.files if "offset" not in f]
    assert len(packed) >= TINY
    # toc.dat and the two large tables' files: one content object each (deduplicated)
    assert len(alone) == 3 and all(
        f["plain_bytes"] >= 1024 * 1024 for f in alone if f["name"] != "toc.dat"
    ), alone
    packs = {f["key"] for f in packed}
    assert set(objects) == packs | {f["key"] for f in alone}
    assert len(objects) <= 6 < len(m.files) / 50  # far fewer objects than files
    for key in packs:  # each pack is its files' ranges, end to end
        ranges = sorted((f["offset"], f["size_bytes"]) for f in packed if f["key"] == key)
        assert ranges[0][0] == 0
        assert all(a + n == b for (a, n), (b, _) in itertools.pairwise(ranges))
        assert ranges[-1][0] + ranges[-1][1] == objects[key].size

    target = unique_name("packs_restored")
    restored = run_job(
        "restore", "--target-db", target, "--force", env={**env, "LOG_LEVEL": "debug"}
    )
    assert restored.returncode == 0, restored.output
    assert fingerprint_db(pg15, target) == fingerprint_db(pg15, database)
    # a whole restore reads each pack whole, in one request, not file by file
    whole = re.findall(r"reading the pack (\S+) whole: (\d+) files", restored.output)
    assert sorted(k for k, _ in whole) == sorted(packs), whole
    assert sum(int(n) for _, n in whole) == len(packed)
    assert "of the pack" not in restored.output

    # restore --table of a tiny table: toc.dat, then that table's range alone
    chosen = unique_name("packs_table")
    one = run_job(
        "restore",
        "--table",
        "public.tiny_0042",
        "--target-db",
        chosen,
        "--force",
        env={**env, "LOG_LEVEL": "debug"},
    )
    assert one.returncode == 0, one.output
    reads = re.findall(r"reading (\d+\.dat): (\d+) bytes at (\d+) of the pack (\S+)", one.output)
    assert len(reads) == 1, reads
    name, size, offset, key = reads[0]
    entry = next(f for f in m.files if f["name"] == name)
    assert (int(size), int(offset), key) == (entry["size_bytes"], entry["offset"], entry["key"])
    toc = next(f for f in m.files if f["name"] == "toc.dat")
    # every byte read: toc.dat (for the selection), then the table's range
    read = re.findall(r": (\d+) files, (\d+) bytes read", one.output)
    assert read == [("1", str(toc["size_bytes"])), ("1", str(entry["size_bytes"]))], read
    rows = "SELECT count(*), sum(id), string_agg(v, ',' ORDER BY id) FROM public.tiny_0042"
    assert _one(pg15, chosen, rows) == _one(pg15, database, rows)

    # in-process, the same selection never opens a pack whole
    calls: list[tuple] = []

    class Recording:
        url = storage.url

        def open(self, key):
            calls.append(("open", key))
            return storage.open(key)

        def open_range(self, key, offset, length):
            calls.append(("range", key, offset, length))
            return storage.open_range(key, offset, length)

    folder = tmp_path / "fetched"
    folder.mkdir()
    fetch_folder(
        load(env).codec, Recording(), m, str(folder), 2, only=lambda n: n in {name, "toc.dat"}
    )  # type: ignore[arg-type]
    assert calls == [("open", toc["key"]), ("range", key, entry["offset"], entry["size_bytes"])]


def test_verify_names_the_file_of_a_flipped_byte_inside_a_pack(packed_env):
    database, env = packed_env
    assert run_job("backup", env=env).returncode == 0
    storage, [m], _ = _stored(env, database)
    victim = sorted((f for f in m.files if "offset" in f), key=lambda f: f["name"])[10]
    with storage.open(victim["key"]) as stream:
        data = bytearray(stream.read())
    data[victim["offset"] + victim["size_bytes"] // 2] ^= 0x01
    storage.put(victim["key"], io.BytesIO(bytes(data)))
    result = run_job("verify", env=env)
    assert result.returncode == 5, result.output
    assert victim["key"] in result.output and victim["name"] in result.output, result.output


def test_garbage_collection_keeps_referenced_packs_and_removes_the_others(pg15, packed_env):
    database, env = packed_env
    assert run_job("backup", env=env).returncode == 0
    time.sleep(1.1)  # a backup's name has the second it started
    pg15.execute(database, "INSERT INTO public.tiny_0001 VALUES (1000, 'changed')")
    assert run_job("backup", env=env).returncode == 0
    storage, [first, second], objects = _stored(env, database)
    first_packs = {f["key"] for f in first.files if "offset" in f}
    second_packs = {f["key"] for f in second.files if "offset" in f}
    assert first_packs and second_packs and not first_packs & second_packs
    # the large tables' objects are shared: deduplicated
    assert {f["key"] for f in first.files if "offset" not in f and f["name"] != "toc.dat"} == {
        f["key"] for f in second.files if "offset" not in f and f["name"] != "toc.dat"
    }
    storage.delete([first.key])  # what retention does to the older backup
    later = datetime.now(UTC) + timedelta(hours=1)
    removed = prune.collect_garbage([storage], Scope(frozenset({database})), later, 0, False)
    left = {o.key for o in storage.list(manifest.objects_prefix(database))}
    assert first_packs.isdisjoint(left)
    assert {f["key"] for f in second.files} <= left
    assert removed == len(set(objects) - left)
    verify = run_job("verify", env=env)
    assert verify.returncode == 0, verify.output
    assert json.loads(run_job("list", "--json", env=env).stdout)


def test_encrypted_packs_restore_with_the_identity(
    pg15,
    packed_env,
    keys,  # noqa: F811
):
    """Each file inside a pack is its own age file: the restore decrypts each range alone."""
    database, env = packed_env
    env = {**env, "BACKUP_AGE_RECIPIENTS": keys["public"], "BACKUP_DEDUP_KEY": "0123abcd" * 8}
    assert run_job("backup", env=env).returncode == 0
    _, [m], objects = _stored(env, database)
    assert all(key.endswith(".zst.age") for key in objects)
    assert len(objects) < len(m.files) / 50
    target = unique_name("packs_age")
    opened = {**env, "BACKUP_AGE_IDENTITY_FILE": str(keys["key"])}
    restored = run_job("restore", "--target-db", target, "--force", env=opened)
    assert restored.returncode == 0, restored.output
    assert fingerprint_db(pg15, target) == fingerprint_db(pg15, database)


def test_many_tables_to_s3_stay_under_the_memory_target(pg15, s3_server, tmp_path):
    """Issue 23's shape, shortened: many small tables and large ones, BACKUP_JOBS=2, to S3.
    The job's tree (the job and pg_dump) stays under the issue's 100 MiB: one large file
    encoded and one object uploaded at a time, the encoded bytes in the spool, not queued."""
    from tests.e2e.test_memory import run_measured

    database = unique_name("packs_mem")
    pg15.create_database(database)
    pg15.execute(database, SETUP)
    for name in ("large_c", "large_d"):  # about 20 MB of COPY text each: a real upload
        pg15.execute(
            database,
            f"CREATE TABLE public.{name} AS SELECT g AS id, md5(g::text) || "
            f"repeat('{name[-1]}', 100) AS pad FROM generate_series(1, 140000) g",
        )
    env = pg15.env(
        database,
        BACKUP_LOCK_DIR=str(tmp_path),
        BACKUP_FORMAT="directory",
        BACKUP_JOBS="2",
        AWS_ACCESS_KEY_ID=s3_server.access_key,
        AWS_SECRET_ACCESS_KEY=s3_server.secret_key,
        AWS_REGION=s3_server.region,
        S3_ENDPOINT_URL=s3_server.endpoint_url,
        BACKUP_DESTINATIONS=f"s3://{s3_server.create_bucket()}/pg",
    )
    peak = run_measured("backup", env=env)
    assert peak.returncode == 0, peak.output[-3000:]
    assert peak.tree_mib < 100, f"the job's process tree peaked at {peak.tree_mib:.0f} MiB"
