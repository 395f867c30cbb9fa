"""`make demo`: a throwaway PostgreSQL with sample data, backed up to ./backups, listed,
restored into a new database and compared with the original, table by table; then one table
dropped "by accident" and brought back alone. Every step prints the `pgbackup` command it runs,
the one a user types.

`make sandbox` (``--sandbox``) runs the same demo and leaves the server and ./backups in place,
printing the `export` lines that point `pgbackup` (and psql) at them; `make sandbox-stop`
(``--stop``) stops that server and removes its data. Bold titles only on a terminal, and never
with NO_COLOR set (https://no-color.org).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fixtures.compare import fingerprint_db  # noqa: E402
from tests.fixtures.pgcluster import Cluster, find_bindir, installed_majors  # noqa: E402

# What `make sandbox-stop` reads to find the server `make sandbox` left running.
SANDBOX_STATE = REPO / ".demo" / "sandbox.json"


def bold(text: str) -> str:
    """``text`` in bold on a terminal; plain when the output is a pipe or a file, or NO_COLOR
    is set to anything non-empty."""
    if os.environ.get("NO_COLOR") or not sys.stdout.isatty():
        return text
    return f"\033[1m{text}\033[0m"


def step(title: str) -> None:
    print("\n" + bold(f"==> {title}"), flush=True)


# `pip install .` (make demo's deps-runtime) puts the command next to the venv's python.
PGBACKUP = Path(sys.executable).parent / "pgbackup"


def job(*args: str, env: dict[str, str]) -> None:
    command = ["pgbackup", *args]
    print("$ " + " ".join(command), flush=True)
    argv = [str(PGBACKUP)] if PGBACKUP.exists() else [sys.executable, "entrypoint.py"]
    code = subprocess.call([*argv, *args], env=env, cwd=REPO)
    if code != 0:
        sys.exit(f"demo: '{' '.join(command)}' exited {code}")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/demo.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "destination",
        nargs="?",
        default="file://./backups",
        help="where the demo's backups go (default: file://./backups, in the checkout)",
    )
    parser.add_argument(
        "--sandbox",
        action="store_true",
        help="leave the server and the backups in place, and print the exports to use them",
    )
    parser.add_argument("--stop", action="store_true", help="stop the sandbox's server")
    parser.add_argument(
        "--state",
        type=Path,
        default=SANDBOX_STATE,
        help=f"where the sandbox's server is recorded (default: {SANDBOX_STATE})",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    if args.stop:
        stop_sandbox(args.state)
        return
    if args.sandbox:
        stop_sandbox(args.state, quiet=True)  # one sandbox at a time: the previous one goes
    # make demo backs up to ./backups; a test passes another destination (and leaves no folder)
    destination = args.destination
    majors = installed_majors()
    if not majors:
        sys.exit("demo: no PostgreSQL server binaries found (apt-get install postgresql)")
    bindir = find_bindir(majors[0])
    assert bindir is not None
    step(f"starting a throwaway PostgreSQL from {bindir}")
    cluster = Cluster(bindir).start()
    keep = False
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
        if args.sandbox:
            keep = True
            leave_sandbox(cluster, env, args.state)
            return
        step("next: your own database")
        print(
            "  PGHOST=db.example.com PGDATABASE=app PGUSER=backup PGPASSWORD=... \\\n"
            "  BACKUP_DESTINATIONS=s3://my-bucket/pg pgbackup check   # then: pgbackup backup\n"
            "  docs: README.md, then docs/index.md (make docs builds the site)"
        )
    finally:
        if not keep:
            step("stopping the throwaway PostgreSQL")
            cluster.stop()


def leave_sandbox(cluster: Cluster, env: dict[str, str], state: Path) -> None:
    """Record the running server for --stop, and print what points a shell at it."""
    destination = env["BACKUP_DESTINATIONS"]
    if destination.startswith("file://./"):  # the jobs ran in the checkout: say where it is
        destination = f"file://{REPO / destination.removeprefix('file://./')}"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(
        json.dumps({"bindir": str(cluster.bindir), "root": str(cluster.root), "port": cluster.port})
    )
    exports = {
        "PGHOST": cluster.host,
        "PGPORT": str(cluster.port),
        "PGUSER": cluster.user,
        "PGPASSWORD": cluster.password,  # the throwaway server's own, nothing else's
        "PGDATABASE": "shop",
    }
    step("the sandbox keeps running: PostgreSQL with 'shop', and its backups")
    print("paste these lines into your shell, then try the commands:")
    print(f'  export PATH="{Path(sys.executable).parent}:$PATH"')
    print("  export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in exports.items()))
    print(f"  export BACKUP_DESTINATIONS={shlex.quote(destination)}")
    print("  pgbackup list            # then: pgbackup backup, pgbackup verify --restore-test,")
    print("                           # pgbackup restore latest --target-db copy --force, psql")
    stop = (
        "make sandbox-stop" if state == SANDBOX_STATE else f"{sys.argv[0]} --stop --state {state}"
    )
    print(f"stop it (the server and its data; the backups stay): {stop}")


def stop_sandbox(state: Path, quiet: bool = False) -> None:
    """Stop the server a --sandbox run left (its data goes with it; the backups stay)."""
    if not state.exists():
        if not quiet:
            print("no sandbox is running (make sandbox starts one)")
        return
    recorded = json.loads(state.read_text())
    Cluster(Path(recorded["bindir"]), Path(recorded["root"])).stop()
    state.unlink()
    print(f"stopped the sandbox's PostgreSQL (port {recorded['port']}), removed {recorded['root']}")


if __name__ == "__main__":
    main()
