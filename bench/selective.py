"""One table out of a large backup (issue 21): bytes read from S3 and wall time of
``restore --table`` against a full ``restore`` of the same backup, on a throwaway PostgreSQL 15
and SeaweedFS.

    .venv/bin/python bench/selective.py                       # 1.5 GB, directory format, 1 round
    .venv/bin/python bench/selective.py --gb 0.5 --rounds 3 --formats directory,custom --json -

The database is bench/data.py's (about ``--gb`` GB on disk; it compresses about tenfold) or,
``--fill random``, one table of incompressible rows (the backup stores about ``--gb`` GB), plus
``public.small_target``
(about ``--table-mb`` MB, with a primary key). Each format's backup is made once, by the job,
to S3; then each round restores the whole backup (``restore --target-db``) and the one table
(``restore --table public.small_target --target-db``), each into a new database dropped
afterwards. The job reaches SeaweedFS through a small streaming proxy (``_CountingProxy``) that
counts the body bytes of every GET: what the restore downloaded, the manifests' small reads
included. Both restores go through it, so its cost is in both times. Nothing is asserted; the
targets (issue 21: under 2 % of the bytes, under 5 % of the time, directory format) are shown
beside the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import data  # noqa: E402
import machine  # noqa: E402

from tests.fixtures.pgcluster import Cluster, find_bindir  # noqa: E402

DATABASE = "bench"
TABLE = "public.small_target"
ROW_BYTES = 140  # on disk per row of small_target (heap + primary key), PostgreSQL 15
CHUNK_BYTES = 1 << 20


class _CountingProxy:
    """Forwards every request to ``upstream`` unchanged (the Host header too: SigV4 holds),
    streaming the response back, and counts the body bytes of GET responses."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        self.get_bytes = 0
        self.gets = 0
        lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                conn = http.client.HTTPConnection(host, port, timeout=300)
                conn.request(self.command, self.path, body=body, headers=dict(self.headers))
                response = conn.getresponse()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection"):
                        self.send_header(key, value)
                if response.getheader("Content-Length") is None:
                    self.close_connection = True
                self.end_headers()
                sent = 0
                try:
                    while self.command != "HEAD" and (chunk := response.read(CHUNK_BYTES)):
                        self.wfile.write(chunk)
                        sent += len(chunk)
                except OSError:  # the client stopped reading (a table of contents read)
                    self.close_connection = True
                conn.close()
                if self.command == "GET":
                    with lock:
                        proxy.get_bytes += sent
                        proxy.gets += 1

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        self.get_bytes = 0
        self.gets = 0

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _job(args: list[str], env: dict[str, str], log: Path) -> float:
    """Run the job; its wall seconds. A failure stops the benchmark with the log's tail."""
    started = time.perf_counter()
    with open(log, "ab") as err:
        code = subprocess.run(
            [sys.executable, str(REPO / "entrypoint.py"), *args],
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
        ).returncode
    seconds = time.perf_counter() - started
    if code != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(args)} exited {code}\n{tail}")
    return seconds


def _fill_target(cluster: Cluster, megabytes: float) -> None:
    rows = max(100, int(megabytes * 1e6 / ROW_BYTES))
    cluster.execute(
        DATABASE,
        "CREATE TABLE public.small_target (id serial PRIMARY KEY, at timestamptz, note text);"
        "INSERT INTO public.small_target (at, note) SELECT now() - g * interval '1 min', "
        f"md5(g::text) || ' ' || md5((g * 7)::text) FROM generate_series(1, {rows}) g",
    )
    cluster.execute(DATABASE, "VACUUM ANALYZE public.small_target")


RANDOM_ROW_BYTES = 200  # on disk per row of random_rows (128 random bytes, heap, primary key)


def _fill_random(cluster: Cluster, gigabytes: float) -> None:
    """``random_rows``: 128 bytes of md5 output per row, which no compressor shrinks, so the
    backup stores about as many bytes as the database holds."""
    rows = max(1000, int(gigabytes * 1e9 / RANDOM_ROW_BYTES))
    cluster.create_database(DATABASE)
    cluster.execute(DATABASE, "CREATE TABLE random_rows (id bigint PRIMARY KEY, payload bytea)")
    digests = " || ".join(f"md5((g * {k})::text)" for k in range(1, 9))
    for start in range(0, rows, data.BATCH_ROWS):
        end = min(start + data.BATCH_ROWS, rows)
        cluster.execute(
            DATABASE,
            f"INSERT INTO random_rows SELECT g, decode({digests}, 'hex') "
            f"FROM generate_series({start + 1}, {end}) g",
        )
    cluster.execute(DATABASE, "VACUUM ANALYZE")


def run(args: argparse.Namespace, out) -> dict:
    bindir = find_bindir(15)
    if bindir is None:
        sys.exit("PostgreSQL 15 is not installed: scripts/install-deps.sh runtime")
    from tests.fixtures.seaweed import running_seaweed

    work = Path(tempfile.mkdtemp(prefix="pgbackup-selective-"))
    work.chmod(0o755)  # the server runs as postgres, under work/pg
    for sub in ("tmp", "lock", "logs"):
        (work / sub).mkdir()
    cluster = Cluster(bindir, root=work / "pg")
    results: dict = {
        "gb": args.gb,
        "fill": args.fill,
        "table_mb": args.table_mb,
        "rounds": args.rounds,
    }
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        cluster.start()
        stack.callback(cluster.stop)
        started = time.perf_counter()
        if args.fill == "random":
            _fill_random(cluster, args.gb)
        else:
            data.fill(cluster, DATABASE, args.gb)
        _fill_target(cluster, args.table_mb)
        with cluster.connect(DATABASE) as conn:
            results["database_bytes"] = conn.execute(
                "SELECT pg_database_size(current_database())"
            ).fetchone()[0]
            results["table_bytes"] = conn.execute(
                f"SELECT pg_total_relation_size('{TABLE}')"
            ).fetchone()[0]
        print(
            f"database {results['database_bytes'] / 1e9:.2f} GB on disk, {TABLE} "
            f"{results['table_bytes'] / 1e6:.2f} MB, made in {time.perf_counter() - started:.0f} s",
            file=out,
            flush=True,
        )
        s3 = stack.enter_context(running_seaweed(work / "weed"))
        proxy = _CountingProxy(s3.endpoint_url)
        stack.callback(proxy.close)
        results["formats"] = {}
        for fmt in args.formats:
            bucket = s3.create_bucket(f"bench-{fmt}")
            env = {
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "HOME": str(work),
                "LANG": "C.UTF-8",
                "TMPDIR": str(work / "tmp"),
                **cluster.env(DATABASE),
                "AWS_ACCESS_KEY_ID": s3.access_key,
                "AWS_SECRET_ACCESS_KEY": s3.secret_key,
                "AWS_REGION": s3.region,
                "S3_ENDPOINT_URL": proxy.url,
                "BACKUP_DESTINATIONS": f"s3://{bucket}/pg",
                "BACKUP_LOCK_DIR": str(work / "lock"),
                "BACKUP_PROGRESS_SECONDS": "0",
                "BACKUP_PG_BIN_DIRS": str(bindir),
                "BACKUP_FORMAT": fmt,
                "BACKUP_JOBS": str(args.jobs),
            }
            log = work / "logs" / f"{fmt}.log"
            _job(["backup"], env, log)
            listing = subprocess.run(
                [sys.executable, str(REPO / "entrypoint.py"), "contents", "--json"],
                env=env,
                cwd=REPO,
                capture_output=True,
                text=True,
                check=True,
            )
            stored = json.loads(listing.stdout)["size_bytes"]
            runs: dict[str, list[dict]] = {"full": [], "table": []}
            for round_no in range(1, args.rounds + 1):
                for way in ("full", "table"):
                    target = f"bench_{way}_{round_no}"
                    argv = ["restore", "latest", "--target-db", target, "--force"]
                    if way == "table":
                        argv += ["--table", TABLE]
                    with cluster.connect() as conn:
                        conn.execute("CHECKPOINT")
                    proxy.reset()
                    seconds = _job(argv, env, log)
                    runs[way].append({"wall_s": seconds, "read_bytes": proxy.get_bytes})
                    cluster.execute("postgres", f"DROP DATABASE {target}")
                    print(
                        f"{fmt} round {round_no} {way:<5} {seconds:7.2f} s  "
                        f"{proxy.get_bytes / 1e6:9.2f} MB read ({proxy.gets} GETs)",
                        file=out,
                        flush=True,
                    )
            full_s = statistics.median(r["wall_s"] for r in runs["full"])
            table_s = statistics.median(r["wall_s"] for r in runs["table"])
            full_b = statistics.median(r["read_bytes"] for r in runs["full"])
            table_b = statistics.median(r["read_bytes"] for r in runs["table"])
            results["formats"][fmt] = {
                "stored_bytes": stored,
                "runs": runs,
                "full_s": full_s,
                "table_s": table_s,
                "full_read_bytes": full_b,
                "table_read_bytes": table_b,
                "table_read_share": table_b / stored,
                "table_time_share": table_s / full_s,
            }
        results["server_version"] = cluster.version
    results["machine"] = machine.describe(REPO, bindir, results["server_version"], sys.executable)
    return results


def table(results: dict) -> list[str]:
    lines = [
        f"database {results['database_bytes'] / 1e9:.2f} GB on disk ({results['fill']} rows); "
        f"{TABLE} "
        f"{results['table_bytes'] / 1e6:.2f} MB; medians of {results['rounds']} round(s)",
        "| format | stored MB | full restore: s | MB read | one table: s | MB read "
        "| bytes (target < 2 %) | time (target < 5 %) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for fmt, r in results["formats"].items():
        lines.append(
            f"| {fmt} | {r['stored_bytes'] / 1e6:.1f} | {r['full_s']:.1f} | "
            f"{r['full_read_bytes'] / 1e6:.1f} | {r['table_s']:.1f} | "
            f"{r['table_read_bytes'] / 1e6:.2f} | {100 * r['table_read_share']:.2f} % | "
            f"{100 * r['table_time_share']:.1f} % |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=1.5, help="the database's size on disk")
    parser.add_argument("--table-mb", type=float, default=1.0, help="the one table's size")
    parser.add_argument("--rounds", type=int, default=1, help="restores of each way")
    parser.add_argument("--jobs", type=int, default=2, help="BACKUP_JOBS (downloads at once)")
    parser.add_argument(
        "--formats",
        default="directory",
        type=lambda v: [f for f in v.split(",") if f],
        help="comma list of directory, custom",
    )
    parser.add_argument(
        "--fill",
        choices=("mixed", "random"),
        default="mixed",
        help="mixed: bench/data.py's rows (compress about 10x); random: incompressible rows, "
        "so the backup stores about --gb GB",
    )
    parser.add_argument("--json", metavar="PATH", help="every run as JSON ('-': stdout)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or not set(args.formats) <= {"directory", "custom"} or not args.formats:
        parser.error("--rounds must be 1 or more; --formats: directory, custom")
    out = sys.stderr if args.json == "-" else sys.stdout
    results = run(args, out)
    print(file=out)
    for line in table(results):
        print(line, file=out)
    for line in machine.summary_lines(results["machine"]):
        print(line, file=out)
    if args.json:
        text = json.dumps(results, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
