"""The ways the benchmark times: bare PostgreSQL tools, the compression floor, and the job's
backup and restore to each destination. Each way runs once per round through ``Way.run``.

Every backup way writes to a prefix of its own and its object is deleted after it is measured;
every restore way reads a backup made once, before the first round (``Setup.seed``), and
restores it into a database of its own name, dropped after it is measured.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from measure import Measurement, ToolWrappers, run_measured

from tests.fixtures.pgcluster import Cluster

DATABASE = "bench"
SUFFIXES = (".dump.zst", ".dump.zst.age", ".dump.gz", ".dump")


@dataclass
class Setup:
    """What every way needs: the server, the job's environment, the destinations."""

    repo: Path
    work: Path
    cluster: Cluster
    wrappers: ToolWrappers
    dump_file: Path  # pg_dump -Fc -Z0 of the database, made once
    age_recipient: str
    s3: Any = None  # tests.fixtures.seaweed.S3Server, when a way needs it
    s3_bucket: str = ""
    b2_key: tuple[str, str] = ("", "")
    clouds: Any = None  # clouds.Clouds: gs:// and az://, when a way needs them
    seeded: dict[str, str] = field(default_factory=dict)  # restore source -> destination URL

    def job_env(self, destinations: str, **extra: str) -> dict[str, str]:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.work),
            "LANG": "C.UTF-8",
            **self.cluster.env(DATABASE),
            "BACKUP_DESTINATIONS": destinations,
            "BACKUP_LOCK_DIR": str(self.work / "lock"),
            "BACKUP_PROGRESS_SECONDS": "0",
            "BACKUP_PG_BIN_DIRS": str(self.wrappers.bindir),
            **extra,
        }
        if self.s3 is not None:
            env.update(
                AWS_ACCESS_KEY_ID=self.s3.access_key,
                AWS_SECRET_ACCESS_KEY=self.s3.secret_key,
                AWS_REGION=self.s3.region,
                S3_ENDPOINT_URL=self.s3.endpoint_url,
            )
        if self.clouds is not None:
            env.update(self.clouds.env())
        if self.b2_key[0]:
            env.update(B2_KEY_ID=self.b2_key[0], B2_APPLICATION_KEY=self.b2_key[1])
            env["BENCH_B2_DIR"] = str(self.work / "b2")
        return env

    def job_argv(self, destination: str, *args: str) -> list[str]:
        if destination.startswith("b2://"):
            return [sys.executable, str(self.repo / "bench" / "b2_child.py"), *args]
        return [sys.executable, str(self.repo / "entrypoint.py"), *args]

    def log_path(self, name: str, round_no: int) -> Path:
        (self.work / "logs").mkdir(exist_ok=True)
        return self.work / "logs" / f"{name}-{round_no}.log"

    # -- destinations ------------------------------------------------------------------------

    def destination(self, kind: str, prefix: str) -> str:
        if kind == "file":
            return f"file://{self.work / 'dest' / prefix}"
        if kind == "s3":
            return f"s3://{self.s3_bucket}/{prefix}"
        if kind in ("gs", "az"):
            return self.clouds.destination(kind, prefix)
        return f"b2://{B2_BUCKET}/{prefix}"

    def stored_bytes(self, url: str) -> int:
        """The size of the newest data object of the database under ``url``; for a
        directory-format backup (file:// only), the sum of its content objects."""
        sizes = sorted(self._objects(url).items())
        if sizes:
            return sizes[-1][1]
        if url.startswith("file://"):
            objects = Path(url.removeprefix("file://")) / DATABASE / "_objects"
            return sum(p.stat().st_size for p in objects.rglob("*") if p.is_file())
        return 0

    def remove(self, url: str) -> None:
        if url.startswith("file://"):
            shutil.rmtree(url.removeprefix("file://"), ignore_errors=True)
        elif url.startswith("s3://"):
            client, (bucket, prefix) = self.s3.client(), _split(url)
            for key in list(_s3_listing(client, bucket, prefix)):
                client.delete_object(Bucket=bucket, Key=key)
        elif url.startswith(("gs://", "az://")):
            self.clouds.remove(url)
        else:
            import b2_child

            b2_child.remove_prefix(self.work / "b2", _split(url)[1])

    def _objects(self, url: str) -> dict[str, int]:
        if url.startswith("file://"):
            root = Path(url.removeprefix("file://"))
            return {str(p): p.stat().st_size for p in root.rglob("*") if _is_data(p.name)}
        if url.startswith(("gs://", "az://")):
            return {k: size for k, size in self.clouds.listing(url).items() if _is_data(k)}
        bucket, prefix = _split(url)
        if url.startswith("s3://"):
            listing = _s3_listing(self.s3.client(), bucket, prefix)
            return {k: size for k, size in listing.items() if _is_data(k)}
        import b2_child

        listing = b2_child.listing(self.work / "b2", prefix)
        return {k: size for k, size in listing.items() if _is_data(k)}


B2_BUCKET = "bench-bucket"


def _split(url: str) -> tuple[str, str]:
    bucket, _, prefix = url.split("://", 1)[1].partition("/")
    return bucket, prefix


def _is_data(name: str) -> bool:
    return name.endswith(SUFFIXES) and not name.rsplit("/", 1)[-1].startswith("globals")


def _s3_listing(client: Any, bucket: str, prefix: str) -> dict[str, int]:
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"]] = item["Size"]
    return found


@dataclass(frozen=True)
class Result:
    measurement: Measurement
    stored_bytes: int = 0


@dataclass(frozen=True)
class Way:
    name: str
    side: str  # "backup", "restore", "reference"
    label: str
    run: Callable[[Setup, int], Result]
    needs: frozenset[str] = frozenset()  # "s3", "b2", "zstd"
    source: str = ""  # restore ways: the backup they read (a key of SOURCES)
    baseline: str = ""  # a bare way this one is also compared with (ratio "vs_baseline")


def _check(name: str, measurement: Measurement, log: Path | None) -> None:
    if measurement.exit_code != 0:
        tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
        raise RuntimeError(f"{name} exited {measurement.exit_code}\n{tail}")


# -- bare tools ------------------------------------------------------------------------------


def _pg_dump(s: Setup, round_no: int) -> Result:
    argv = [str(s.wrappers.bindir / "pg_dump"), "-Fc", "-Z0", "--no-password"]
    log = s.log_path("pg_dump", round_no)
    m = run_measured(argv, s.job_env(""), s.wrappers, s.repo, stderr_path=log)
    _check("pg_dump", m, log)
    return Result(m)


def _floor(s: Setup, round_no: int) -> Result:
    pg_dump = s.wrappers.bindir / "pg_dump"
    script = f"set -o pipefail; '{pg_dump}' -Fc -Z0 --no-password | zstd -q -3 -T0 > /dev/null"
    log = s.log_path("floor", round_no)
    m = run_measured(["bash", "-c", script], s.job_env(""), s.wrappers, s.repo, stderr_path=log)
    _check("floor", m, log)
    return Result(m)


def _zstd_alone(s: Setup, round_no: int) -> Result:
    argv = ["zstd", "-q", "-3", "-T1", "-c", str(s.dump_file)]
    m = run_measured(argv, s.job_env(""), s.wrappers, s.repo)
    _check("zstd", m, None)
    return Result(m)


def _bare_dump_dir(jobs: int) -> Callable[[Setup, int], Result]:
    """pg_dump -Fd -j N -Z0 into a folder of the work directory, removed afterwards: the
    directory format's own floor (what the job adds is compression, hashing, upload)."""

    def run(s: Setup, round_no: int) -> Result:
        folder = s.work / "spool" / f"bare-j{jobs}-{round_no}"
        folder.parent.mkdir(exist_ok=True)
        argv = [str(s.wrappers.bindir / "pg_dump"), "-Fd", f"-j{jobs}", "-Z0", "--no-sync"]
        argv += ["--no-password", "-f", str(folder)]
        log = s.log_path(f"pg_dump-dir-j{jobs}", round_no)
        try:
            m = run_measured(argv, s.job_env(""), s.wrappers, s.repo, stderr_path=log)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        _check(f"pg_dump -Fd -j{jobs}", m, log)
        return Result(m)

    return run


def _bare_restore(jobs: int) -> Callable[[Setup, int], Result]:
    def run(s: Setup, round_no: int) -> Result:
        target = f"bare_j{jobs}_{round_no}"
        s.cluster.create_database(target)
        argv = [
            str(s.wrappers.bindir / "pg_restore"),
            "--no-password",
            "--exit-on-error",
            f"--jobs={jobs}",
            "--dbname",
            target,
            str(s.dump_file),
        ]
        log = s.log_path(f"pg_restore-j{jobs}", round_no)
        try:
            m = run_measured(argv, s.job_env(""), s.wrappers, s.repo, stderr_path=log)
        finally:
            drop_database(s.cluster, target)
        _check("pg_restore", m, log)
        return Result(m, s.dump_file.stat().st_size)

    return run


def _s3_download(s: Setup, round_no: int) -> Result:
    url = s.seeded["s3"]
    key = max(s._objects(url))
    argv = [
        sys.executable,
        str(s.repo / "bench" / "s3_download.py"),
        s.s3.endpoint_url,
        s.s3_bucket,
        key,
    ]
    log = s.log_path("s3-download", round_no)
    m = run_measured(argv, s.job_env(""), s.wrappers, s.repo, stderr_path=log)
    _check("s3-download", m, log)
    return Result(m, s.stored_bytes(url))


# -- the job ---------------------------------------------------------------------------------


def _job_backup(name: str, kind: str, **extra: str) -> Callable[[Setup, int], Result]:
    def run(s: Setup, round_no: int) -> Result:
        url = s.destination(kind, name)
        env = s.job_env(url, **extra)
        if extra.get("BACKUP_AGE_RECIPIENTS") == "generated":
            env["BACKUP_AGE_RECIPIENTS"] = s.age_recipient
        if extra.get("BACKUP_FORMAT") == "directory":
            env["TMPDIR"] = str(s.work / "spool")  # where the bare pg_dump -Fd writes too
            (s.work / "spool").mkdir(exist_ok=True)
        log = s.log_path(name, round_no)
        m = run_measured(s.job_argv(url, "backup"), env, s.wrappers, s.repo, stderr_path=log)
        _check(name, m, log)
        stored = s.stored_bytes(url)
        s.remove(url)
        return Result(m, stored)

    return run


def _job_restore(name: str, kind: str, jobs: int = 1) -> Callable[[Setup, int], Result]:
    def run(s: Setup, round_no: int) -> Result:
        url = s.seeded[kind]
        target = f"r_{name.replace('-', '_')}_{round_no}"
        args = ["restore", "latest", "--database", DATABASE, "--target-db", target]
        args += ["--destination", url, "--force", "--jobs", str(jobs)]
        log = s.log_path(name, round_no)
        env = {**s.job_env(url), "TMPDIR": str(s.work / "tmp")}
        (s.work / "tmp").mkdir(exist_ok=True)
        try:
            m = run_measured(s.job_argv(url, *args), env, s.wrappers, s.repo, stderr_path=log)
        finally:
            drop_database(s.cluster, target)
        _check(name, m, log)
        return Result(m, s.stored_bytes(url))

    return run


# A restore source: the destination kind, the prefix, the backup's settings.
SOURCES = {
    "file": ("file", "restore-source", {}),
    "s3": ("s3", "restore-source", {}),
    "b2": ("b2", "restore-source", {}),
    "file-dir": ("file", "restore-source-dir", {"BACKUP_FORMAT": "directory", "BACKUP_JOBS": "2"}),
}


def seed(s: Setup, source: str) -> None:
    """One backup of the database to ``source`` (see SOURCES), read by the restore ways (not
    measured)."""
    kind, prefix, extra = SOURCES[source]
    url = s.destination(kind, prefix)
    log = s.log_path(f"seed-{source}", 0)
    env = s.job_env(url, **extra)
    m = run_measured(s.job_argv(url, "backup"), env, s.wrappers, s.repo, None, log)
    _check(f"seed backup to {source}", m, log)
    s.seeded[source] = url


def drop_database(cluster: Cluster, name: str) -> None:
    with cluster.connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


S3, B2, ZSTD = frozenset({"s3"}), frozenset({"b2"}), frozenset({"zstd"})
GS, AZ = frozenset({"gs"}), frozenset({"az"})
AGE = "generated"
WAYS = [
    Way("pg_dump", "backup", "bare pg_dump -Fc -Z0 > /dev/null", _pg_dump),
    Way("floor", "backup", "floor: pg_dump -Fc -Z0 | zstd -3 -T0", _floor, ZSTD),
    Way("zstd", "reference", "zstd -3 -T1 < uncompressed dump", _zstd_alone, ZSTD),
    Way("backup-file", "backup", "job backup -> file://", _job_backup("backup-file", "file")),
    Way("backup-s3", "backup", "job backup -> s3://", _job_backup("backup-s3", "s3"), S3),
    Way("backup-b2", "backup", "job backup -> b2:// (sim)", _job_backup("backup-b2", "b2"), B2),
    Way(
        "backup-gs", "backup", "job backup -> gs:// (emulator)", _job_backup("backup-gs", "gs"), GS
    ),
    Way("backup-az", "backup", "job backup -> az:// (Azurite)", _job_backup("backup-az", "az"), AZ),
    Way(
        "backup-file-age",
        "backup",
        "job backup -> file:// + age",
        _job_backup("backup-file-age", "file", BACKUP_AGE_RECIPIENTS=AGE),
    ),
    Way(
        "backup-s3-age",
        "backup",
        "job backup -> s3:// + age",
        _job_backup("backup-s3-age", "s3", BACKUP_AGE_RECIPIENTS=AGE),
        S3,
    ),
    Way(
        "backup-file-t1",
        "backup",
        "job backup -> file://, 1 zstd thread",
        _job_backup("backup-file-t1", "file", BACKUP_COMPRESSION_THREADS="1"),
    ),
    Way(
        "backup-file-t2",
        "backup",
        "job backup -> file://, 2 zstd threads",
        _job_backup("backup-file-t2", "file", BACKUP_COMPRESSION_THREADS="2"),
    ),
    Way(
        "pg_dump-dir-j1",
        "backup",
        "bare pg_dump -Fd -j1 -Z0 > spool folder",
        _bare_dump_dir(1),
    ),
    Way(
        "pg_dump-dir-j2",
        "backup",
        "bare pg_dump -Fd -j2 -Z0 > spool folder",
        _bare_dump_dir(2),
    ),
    Way(
        "backup-file-dir-j1",
        "backup",
        "job backup -> file://, directory -j1",
        _job_backup("backup-file-dir-j1", "file", BACKUP_FORMAT="directory", BACKUP_JOBS="1"),
        baseline="pg_dump-dir-j1",
    ),
    Way(
        "backup-file-dir-j2",
        "backup",
        "job backup -> file://, directory -j2",
        _job_backup("backup-file-dir-j2", "file", BACKUP_FORMAT="directory", BACKUP_JOBS="2"),
        baseline="pg_dump-dir-j2",
    ),
    Way("pg_restore", "restore", "bare pg_restore from local file", _bare_restore(1)),
    Way("pg_restore-j2", "restore", "bare pg_restore -j2 from local file", _bare_restore(2)),
    Way("s3-download", "restore", "download alone: S3 object -> /dev/null", _s3_download, S3, "s3"),
    Way(
        "restore-file",
        "restore",
        "job restore <- file://",
        _job_restore("restore-file", "file"),
        source="file",
    ),
    Way(
        "restore-s3",
        "restore",
        "job restore <- s3://",
        _job_restore("restore-s3", "s3"),
        S3,
        "s3",
    ),
    Way(
        "restore-b2",
        "restore",
        "job restore <- b2:// (sim)",
        _job_restore("restore-b2", "b2"),
        B2,
        "b2",
    ),
    Way(
        "restore-file-dir-j2",
        "restore",
        "job restore --jobs 2 <- file://, directory",
        _job_restore("restore-file-dir-j2", "file-dir", jobs=2),
        source="file-dir",
        baseline="pg_restore-j2",
    ),
    Way(
        "restore-s3-j2",
        "restore",
        "job restore --jobs 2 <- s3://",
        _job_restore("restore-s3-j2", "s3", jobs=2),
        S3,
        "s3",
    ),
]
BY_NAME = {way.name: way for way in WAYS}
