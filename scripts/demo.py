"""`make demo`: a throwaway PostgreSQL with sample data, backed up to ./backups, listed,
restored into a new database and compared with the original, table by table; then one table
dropped "by accident" and brought back alone. Every step prints the `pgbackup` command it runs,
the one a user types."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fixtures.compare import fingerprint_db  # noqa: E402
from tests.fixtures.pgcluster import Cluster, find_bindir, installed_majors  # noqa: E402


def step(title: str) -> None:
    print(f"\n\033[1m==> {title}\033[0m", flush=True)


# `pip install .` (make demo's deps-runtime) puts the command next to the venv's python.
PGBACKUP = Path(sys.executable).parent / "pgbackup"


def job(*args: str, env: dict[str, str]) -> None:
    command = ["pgbackup", *args]
    print("$ " + " ".join(command), flush=True)
    argv = [str(PGBACKUP)] if PGBACKUP.exists() else [sys.executable, "entrypoint.py"]
    code = subprocess.call([*argv, *args], env=env, cwd=REPO)
    if code != 0:
        sys.exit(f"demo: '{' '.join(command)}' exited {code}")


def main() -> None:
    # make demo backs up to ./backups; a test passes another destination (and leaves no folder)
    destination = sys.argv[1] if len(sys.argv) > 1 else "file://./backups"
    majors = installed_majors()
    if not majors:
        sys.exit("demo: no PostgreSQL server binaries found (apt-get install postgresql)")
    bindir = find_bindir(majors[0])
    assert bindir is not None
    step(f"starting a throwaway PostgreSQL from {bindir}")
    cluster = Cluster(bindir).start()
    try:
        print(f"PostgreSQL {cluster.version} on 127.0.0.1:{cluster.port}, data in {cluster.root}")
        cluster.create_database("shop")
        cluster.load_sample("shop")
        print("database 'shop' filled with sample data (schemas, enums, jsonb, partitions, ...)")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PG", "BACKUP_"))},
            **cluster.env("shop"),
            "BACKUP_PROGRESS_SECONDS": "0",
            "BACKUP_DESTINATIONS": destination,
        }
        step("backup to ./backups (the default destination)")
        job("backup", env=env)
        step("list")
        job("list", env=env)
        step("restore the latest backup into a new database, shop_restored")
        job("restore", "latest", "--target-db", "shop_restored", "--force", env=env)
        step("verify the stored backup (size, sha256, archive listing)")
        job("verify", env=env)
        step("compare the restored database with the original, table by table")
        original = fingerprint_db(cluster, "shop")
        restored = fingerprint_db(cluster, "shop_restored")
        for key, value in original.items():
            if key.startswith(("r:", "m:")):
                mark = "ok " if restored.get(key) == value else "DIFF"
                print(f"  {mark} {key[2:]:<40} {value[0]:>7} rows")
        if restored != original:
            sys.exit("demo: the restored database differs from the original")
        print(
            "\nrestored database matches the original: every table, sequence, view, "
            "function, comment, grant and large object"
        )
        step("an accident: DROP TABLE shop.audit_log; bring back that one table alone")
        before = fingerprint_db(cluster, "shop")
        cluster.execute("shop", "DROP TABLE shop.audit_log")
        print("$ psql shop -c 'DROP TABLE shop.audit_log'")
        job("restore", "latest", "--table", "shop.audit_log", "--in-place", "--force", env=env)
        if fingerprint_db(cluster, "shop") != before:
            sys.exit("demo: the table restored alone differs from the one dropped")
        print("shop.audit_log is back: rows, indexes, sequence, grants; nothing else touched")
        step("next: your own database")
        print(
            "  PGHOST=db.example.com PGDATABASE=app PGUSER=backup PGPASSWORD=... \\\n"
            "  BACKUP_DESTINATIONS=s3://my-bucket/pg pgbackup check   # then: pgbackup backup\n"
            "  docs: README.md, then docs/index.md (make docs builds the site)"
        )
    finally:
        step("stopping the throwaway PostgreSQL")
        cluster.stop()


if __name__ == "__main__":
    main()
