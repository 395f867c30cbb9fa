"""The tally of issue 11: a fixed list of bad or odd configuration values, tried one at a time.

    .venv/bin/python bench/hostile_config.py          # python entrypoint.py check, real server
    .venv/bin/python bench/hostile_config.py --load   # backup.config.load() in-process (fast)

Every value of README's configuration table gets the same hostile values (empty, spaces,
control characters, non-ASCII, 100,000 characters, numbers out of range, broken URLs), plus the
cases the issue listed, plus every ``NAME_FILE`` pointed at a FIFO, /dev/zero, a directory,
non-UTF-8 bytes, a file over 64 KiB and a missing file. The CLI mode starts a throwaway
PostgreSQL 15 and a local directory destination, so a value that is accepted reaches a
``check`` that works. Prints: tried / clean exit 2 / accepted (documented) / other, the other
ones case by case, and the slowest case.

Outcomes:
- clean exit 2: exit code 2, an ``error:`` line naming the variable, no traceback, no secret;
- accepted (documented): not refused, no traceback, and README says why the value is fine
  (empty counts as unset; a free-text value such as a user name or a path; a value a server
  judges: it then fails with its own exit code, 3 for the database);
- other: anything else (a traceback, exit 1, a wrong exit code, a secret in the output, slow).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from backup.config import load  # noqa: E402
from backup.errors import ConfigError  # noqa: E402
from tests.unit.test_readme_configuration import documented, read_by_code  # noqa: E402

SECRET = "s3cr3t-Value-42"
SECRET_NAMES = read_by_code()[1]
# Values README documents as free text (a name, a path, a key the server or the store judges):
# any value without a control character is taken as it is.
FREE_TEXT = {
    "PGUSER",
    "PGPASSWORD",
    "PGDATABASE",
    "PGOPTIONS",
    "PGAPPNAME",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGSSLROOTCERT",
    "PGSSLCERT",
    "PGSSLKEY",
    "BACKUP_LOCK_DIR",
    "BACKUP_PG_BIN_DIRS",
    "PROMETHEUS_JOB_NAME",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "B2_APPLICATION_KEY",
    "TELEGRAM_BOT_TOKEN",
    "BACKUP_AGE_PASSPHRASE",
    "BACKUP_DATABASES",
    "TMPDIR",
}
GENERIC = [
    ("empty", ""),
    ("spaces", "   "),
    ("newline", "a\nb"),
    ("escape", "\x1b[31mred"),
    ("non-ASCII", "ünïcødé-名前"),
    ("huge", "x" * 100_000),
    ("negative", "-1"),
    ("overflow", "99999999999"),
    ("bracket", "http://[::1"),
]
SPECIFIC = [
    ("DATABASE_URL", f"postgresql://u:{SECRET}@[::1/db"),
    ("DATABASE_URL", f"postgresql://u:{SECRET}@host:99999/db"),
    ("DATABASE_URL", f"mysql://u:{SECRET}@host/db"),
    ("DATABASE_URL", f"postgresql://u:{SECRET}@h/db?sslmode=sometimes"),
    ("VERIFY_DATABASE_URL", f"postgresql://u:{SECRET}@[::1/db"),
    ("NOTIFY_WEBHOOK_URL", f"https://hooks.example.com/{SECRET},http://[::1"),
    ("HEALTHCHECK_URL", f"https://hc-ping.com/{SECRET} x"),
    ("TELEGRAM_API_URL", "ftp://api.telegram.org"),
    ("PROMETHEUS_PUSHGATEWAY_URL", "http://pushgateway:0"),
    ("S3_ENDPOINT_URL", "http://minio\n:9000"),
    ("S3_ENDPOINT_URL", "http://mïnio:9000"),
    ("S3_ENDPOINT_URL", "minio:9000"),
    ("AWS_REGION", "eu central"),
    ("AWS_REGION", "../../etc"),
    ("AWS_DEFAULT_REGION", "-x-"),
    ("PGHOST", "a" * 300),
    ("PGHOST", "db..internal"),
    ("PGHOST", "db internal"),
    ("PGPORT", "0"),
    ("PGPORT", "65536"),
    ("PGPORT", "5432abc"),
    ("PGSSLMODE", "sometimes"),
    ("PGCONNECT_TIMEOUT", "1e9"),
    ("BACKUP_RETENTION_DAYS", "99999999999"),
    ("BACKUP_RETENTION_DAYS", "1_000"),
    ("BACKUP_KEEP_MIN", "0"),
    ("BACKUP_PART_SIZE_MB", "4"),
    ("BACKUP_COMPRESSION_LEVEL", "23"),
    ("BACKUP_RETRY_MAX_SECONDS", "nan"),
    ("BACKUP_RETRY_BACKOFF_SECONDS", "inf"),
    ("NOTIFY_TIMEOUT_SECONDS", "0"),
    ("BACKUP_TIMEOUT", "0.5s"),
    ("BACKUP_TIMEOUT", "30d"),
    ("BACKUP_LOCK_WAIT_TIMEOUT", "forever"),
    ("BACKUP_AGE_RECIPIENTS", "age1notakey"),
    ("BACKUP_AGE_RECIPIENTS", "ssh-ed25519 AAAAnotakey"),
    ("BACKUP_AGE_IDENTITY", f"AGE-SECRET-KEY-1{SECRET}"),
    ("BACKUP_AGE_IDENTITY", "-----BEGIN OPENSSH PRIVATE KEY-----\nbroken\n"),
    ("BACKUP_DESTINATIONS", f"file://user:{SECRET}@/path"),
    ("BACKUP_DESTINATIONS", "file://relative/path"),
    ("BACKUP_DESTINATIONS", "s3://bucket/../../escape"),
    ("BACKUP_DESTINATIONS", "s3://[cfg/x"),
    ("BACKUP_DESTINATIONS", "s3://bucket/p\nfile:///tmp"),
    ("BACKUP_DESTINATIONS", "s3://ab/x"),
    ("BACKUP_DESTINATIONS", "s3://bucket/x?versionId=1"),
    ("BACKUP_DESTINATIONS", "ftp://host/x"),
    ("BACKUP_DESTINATIONS", "file:///tmp/a,file:///tmp/a"),
    ("BACKUP_DATABASES", "all,shop"),
    ("BACKUP_DATABASES", "d" * 64),
    ("METRICS_FILE", "/nonexistent/dir/job.prom"),
    ("METRICS_FILE", "/tmp"),
    ("TELEGRAM_CHAT_ID", "my friends"),
    ("S3_SSE", "yes please"),
    ("B2_KEY_ID", "key id"),
    ("B2_BUCKET_NAME", "x"),
    ("LOG_LEVEL", "verbose"),
    ("LOG_FORMAT", "xml"),
    ("BACKUP_STRICT_ENV", "maybe"),
    ("BACKUP_RETENTON_DAYS", "7"),
    ("BACKUP_DESTINATION", "s3://bucket/x"),
]
# Values of the generic list that are valid for these variables, as README's rules say.
VALID_SYNTAX = {
    "ADMIN_USER_ID": (lambda v: v.lstrip("-").isdigit(), "a valid chat number"),
    "TELEGRAM_CHAT_ID": (lambda v: v.lstrip("-").isdigit(), "a valid chat number"),
    "B2_BUCKET_NAME": (str.isalnum, "a valid bucket name"),
    "B2_KEY_ID": (str.isalnum, "a valid key ID"),
    "PGHOST": (str.isdigit, "a valid host name (a label of digits)"),
    "METRICS_FILE": (lambda v: "/" not in v, "a file name in the working directory"),
}
FILE_KINDS = ["fifo", "/dev/zero", "directory", "latin1", "huge", "missing"]


@dataclass
class Case:
    variable: str
    label: str
    env: dict[str, str]
    secret: str | None = None


@dataclass
class Outcome:
    case: Case
    verdict: str  # "exit 2", "accepted", "other"
    why: str
    seconds: float


def build_cases(files: dict[str, str]) -> list[Case]:
    _, secrets = read_by_code()
    cases = [
        Case(name, label, {name: value}, value if name in secrets else None)
        for name in sorted(documented())
        for label, value in GENERIC
    ]
    cases += [
        Case(name, repr(value[:40]), {name: value}, SECRET if SECRET in value else None)
        for name, value in SPECIFIC
    ]
    cases += [
        Case(f"{name}_FILE", kind, {f"{name}_FILE": files[kind]})
        for name in sorted(secrets)
        for kind in FILE_KINDS
    ]
    name = "BACKUP_AGE_RECIPIENTS_FILE"
    cases += [Case(name, kind, {name: files[kind]}) for kind in FILE_KINDS]
    return cases


def special_files(root: Path) -> dict[str, str]:
    os.mkfifo(root / "fifo")
    (root / "latin1").write_bytes(b"p\xe4ss\xff")
    (root / "huge").write_bytes(b"x" * 70_000)
    (root / "dir").mkdir()
    return {
        "fifo": str(root / "fifo"),
        "/dev/zero": "/dev/zero",
        "directory": str(root / "dir"),
        "latin1": str(root / "latin1"),
        "huge": str(root / "huge"),
        "missing": str(root / "missing"),
    }


def judge(case: Case, code: int, output: str, seconds: float) -> Outcome:
    base = case.variable.removesuffix("_FILE")
    if base not in SECRET_NAMES:  # METRICS_FILE is not a secret's file
        base = case.variable
    if case.secret and len(case.secret) >= 8 and case.secret in output:
        return Outcome(case, "other", "the secret is in the output", seconds)
    if "Traceback" in output or "this is a bug" in output or "unexpected" in output:
        return Outcome(case, "other", f"exit {code}: {_last_line(output)}", seconds)
    if seconds > 1.0:
        return Outcome(case, "other", f"took {seconds:.1f} s", seconds)
    if code == 2:
        if base in output or case.variable in output:
            return Outcome(case, "exit 2", "", seconds)
        return Outcome(case, "other", f"exit 2 not naming it: {_last_line(output)}", seconds)
    value = next(iter(case.env.values()))
    if not value.strip():
        return Outcome(case, "accepted", "empty counts as unset", seconds)
    if "did you mean" in output:
        return Outcome(case, "accepted", "an unknown name: a warning with a suggestion", seconds)
    if base in FREE_TEXT:
        return Outcome(case, "accepted", f"free text (exit {code})", seconds)
    if base in VALID_SYNTAX and VALID_SYNTAX[base][0](value):
        return Outcome(case, "accepted", f"{VALID_SYNTAX[base][1]} (exit {code})", seconds)
    return Outcome(case, "other", f"exit {code}: {_last_line(output)}", seconds)


def _last_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "(no output)")[:160]


def run_load(case: Case, base_env: dict[str, str]) -> Outcome:
    started = time.monotonic()
    try:
        config = load({**base_env, **case.env})
        code, output = 0, "".join(f"{n} (did you mean {s}?)\n" for n, s in config.unknown_variables)
    except ConfigError as err:
        code, output = 2, f"error: {err.message}\nhint: {err.hint}"
    except Exception as err:  # what the tally is for
        code, output = 1, f"Traceback: {type(err).__name__}: {str(err)[:100]}"
    return judge(case, code, output, time.monotonic() - started)


def run_cli(case: Case, base_env: dict[str, str]) -> Outcome:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "BACKUP_", "AWS_"))}
    env.update(base_env)
    env.update(case.env)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, str(REPO / "entrypoint.py"), "check"],
            env=env,
            cwd=base_env["_CWD"],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        code, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired:
        code, output = -1, "Traceback: timed out after 120 s"
    return judge(case, code, output, time.monotonic() - started - STARTUP_S)


STARTUP_S = 0.0  # CLI mode: the slowest of three checks of the base environment, subtracted


def main() -> int:
    global STARTUP_S
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--load", action="store_true", help="call load() in-process")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        root = Path(tmp)
        os.chmod(root, 0o755)  # noqa: S103  the cluster's user reads nothing here, the job does
        cases = build_cases(special_files(root))
        (root / "backups").mkdir()
        base_env = {
            "PGDATABASE": "postgres",
            "BACKUP_DESTINATIONS": f"file://{root / 'backups'}",
            "BACKUP_LOCK_DIR": str(root),
            "B2_KEY_ID": "0012ab34cd56",
            "B2_APPLICATION_KEY": "K0012abcdef",
            "_CWD": str(root),
        }
        cluster = None
        if args.load:
            runner = run_load
        else:
            from tests.fixtures.pgcluster import Cluster, find_bindir

            bindir = find_bindir(15)
            if bindir is None:
                print("PostgreSQL 15 not found", file=sys.stderr)
                return 2
            cluster = Cluster(bindir).start()
            base_env.update(cluster.env("postgres"))
            runner = run_cli
            # A check that works, whatever the value: its time is what each case is compared with.
            base = Case("BACKUP_STRICT_ENV", "base", {"BACKUP_STRICT_ENV": "true"})
            runs = [run_cli(base, base_env) for _ in range(3)]
            if any(not run.why.startswith("exit 0") for run in runs):
                print(f"the base environment does not pass check: {runs[0].why}", file=sys.stderr)
                return 1
            STARTUP_S = max(run.seconds for run in runs)
        try:
            with ThreadPoolExecutor(args.workers) as pool:
                outcomes = list(pool.map(lambda c: runner(c, base_env), cases))
        finally:
            if cluster is not None:
                cluster.stop()
    report(outcomes, "load()" if args.load else "python entrypoint.py check")
    return 0


def report(outcomes: list[Outcome], how: str) -> None:
    counts = {verdict: 0 for verdict in ("exit 2", "accepted", "other")}
    for outcome in outcomes:
        counts[outcome.verdict] += 1
    variables = {outcome.case.variable for outcome in outcomes}
    print(f"through {how}: {len(outcomes)} values over {len(variables)} variables")
    print(
        f"tried {len(outcomes)} / clean exit 2 {counts['exit 2']} / "
        f"accepted (documented) {counts['accepted']} / other {counts['other']}"
    )
    slowest = max(outcomes, key=lambda o: o.seconds)
    print(f"slowest: {slowest.case.variable} {slowest.case.label}: {slowest.seconds:.3f} s")
    if STARTUP_S:
        print(f"(CLI mode: times are beyond a working check of the base env, {STARTUP_S:.2f} s)")
    accepted: dict[str, int] = {}
    for outcome in outcomes:
        if outcome.verdict == "accepted":
            accepted[outcome.why.split(" (")[0]] = accepted.get(outcome.why.split(" (")[0], 0) + 1
    for why, count in sorted(accepted.items()):
        print(f"  accepted: {why}: {count}")
    for outcome in outcomes:
        if outcome.verdict == "other":
            print(f"  other: {outcome.case.variable} {outcome.case.label}: {outcome.why}")


if __name__ == "__main__":
    sys.exit(main())
