"""Shared fixtures: real PostgreSQL clusters, and running the job as users do (a subprocess)."""

from __future__ import annotations

import compileall
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from tests.fixtures import jobrunner
from tests.fixtures.pgcluster import Cluster, find_bindir

# Session-scoped servers are defined once here, so every test directory shares one of each.
pytest_plugins = ["tests.fixtures.seaweed", "tests.fixtures.b2sim", "tests.fixtures.clouds"]

# CI runs the property tests on a fixed sequence of examples, so a green commit stays green;
# a developer's run explores new ones (and hypothesis remembers what failed in .hypothesis/).
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")
# make test-fast, the daily loop, tries a fifth of the examples (tests/fixtures/examples.py).
if os.environ.get("PGBACKUP_TEST_FAST"):
    hypothesis_settings.register_profile("fast", hypothesis_settings(), max_examples=20)
    hypothesis_settings.load_profile("fast")

REPO = Path(__file__).resolve().parent.parent
SAMPLE_SQL = (REPO / "tests" / "fixtures" / "sample.sql").read_text()
_counter = itertools.count()

# Variables of ours or of libpq that must not leak from the developer's shell into a test.
_SCRUBBED_PREFIXES = (
    "PG",
    "BACKUP_",
    "B2_",
    "AWS_",
    "S3_",
    "TELEGRAM_",
    "NOTIFY_",
    "HEALTHCHECK",
    "PROMETHEUS_",
    "METRICS_",
    "LOG_",
    "DATABASE_URL",
    "VERIFY_",
    "ADMIN_USER_ID",
    "ALERT_AFTER",
)


def pytest_configure(config: pytest.Config) -> None:
    """Most tests run the job as users do, a new ``python entrypoint.py`` each time. Where
    PYTHONDONTWRITEBYTECODE is set (this machine, CI, the image), each of those would compile
    the whole ``backup`` package from source again: it is compiled once here, before the
    workers start (the image's pip install does the same at build time)."""
    if not hasattr(config, "workerinput"):
        compileall.compile_dir(REPO / "backup", quiet=2)


def pytest_unconfigure(config: pytest.Config) -> None:
    jobrunner.stop()


def clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}


@dataclass
class JobResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_job(
    *args: str, env: dict[str, str], timeout: float = 300, input: str | None = None
) -> JobResult:
    """``python entrypoint.py ARGS`` with exactly ``env`` (plus PATH/HOME), as a user runs it:
    a process of its own, forked from an interpreter that has the job imported already
    (tests/fixtures/zygote.py: half a CPU-second saved per run), or a fresh one where the
    run's environment changes what an interpreter reads when it starts."""
    base = clean_environ()
    full_env = {**base, "BACKUP_PROGRESS_SECONDS": "0", **env}
    cwd = env.get("_CWD", str(REPO))
    code, out, err = jobrunner.run(args, full_env, base, cwd, timeout, input)
    return JobResult(code, out, err)


def _start(major: int) -> Cluster:
    bindir = find_bindir(major)
    if bindir is None:
        pytest.fail(
            f"PostgreSQL {major} binaries not found: run 'make test' (it installs them)",
            pytrace=False,
        )
    return Cluster(bindir).start()


@pytest.fixture(scope="session")
def pg15():
    cluster = _start(15)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def pg17():
    cluster = _start(17)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def pg18():
    cluster = _start(18)
    yield cluster
    cluster.stop()


def unique_name(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{next(_counter)}"


@pytest.fixture
def sample_db(pg15) -> str:
    """A fresh database on PostgreSQL 15 filled with many kinds of objects."""
    name = unique_name("shop")
    return pg15.create_sample_database(name)


@pytest.fixture
def backup_dir(tmp_path) -> Path:
    path = tmp_path / "backups"
    path.mkdir()
    return path


@pytest.fixture
def job_env(pg15, sample_db, backup_dir, tmp_path) -> dict[str, str]:
    """The environment of a job backing ``sample_db`` up to a local directory."""
    return pg15.env(
        sample_db,
        BACKUP_DESTINATIONS=f"file://{backup_dir}",
        BACKUP_LOCK_DIR=str(tmp_path),
    )
