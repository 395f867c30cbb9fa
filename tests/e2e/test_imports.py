"""A short run pays only for the libraries it uses (STYLE.md: backends imported lazily).

``list`` on a file:// destination, with no notifier, no metrics and no encryption, must not
load boto3, b2sdk, requests, prometheus_client, pyrage or apprise: each costs start-up time and
memory (apprise about 0.5 s and 30 MB with its plugins).

A run imports only the module of its own verb (``backup.commands.HELP`` gives ``--help`` its
lines): ``--help`` imports no verb and no engine, not even psycopg (0.3 s of CPU and 24 MB on
its own, asyncio included); a backup to file:// no other verb's module and no restore engine;
a verify without ``--restore-test`` never connects, so imports no psycopg.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, clean_environ

HEAVY = ("boto3", "botocore", "b2sdk", "requests", "prometheus_client", "pyrage", "apprise")
HEAVY += ("google", "azure", "msal")  # gs:// and az:// libraries, azure-identity's too

VERBS = ("backup", "list", "restore", "verify", "prune", "status", "check", "contents")
# The engines and mechanisms a verb's run may import, none of which --help needs.
ENGINES = ("dump", "restore", "verify", "retention", "dirformat", "manifest", "storage")
ENGINES += ("stream", "postgres", "job", "notify", "metrics")

PROBE = """
import atexit, json, runpy, sys
def loaded():
    print("MODULES", json.dumps(sorted(sys.modules)), file=sys.stderr)
atexit.register(loaded)
sys.argv = ["entrypoint.py", *{args!r}]
runpy.run_path("entrypoint.py", run_name="__main__")
"""


def _modules_of_a_run(env: dict[str, str], *args: str) -> set[str]:
    """The modules ``entrypoint.py ARGS`` had imported when it exited (it must exit 0)."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=args)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("MODULES ")]
    return set(json.loads(line.removeprefix("MODULES ")))


def _heavy(modules: set[str]) -> list[str]:
    return sorted({m.split(".")[0] for m in modules} & set(HEAVY))


def _verbs(modules: set[str]) -> list[str]:
    return sorted(v for v in VERBS if f"backup.commands.{v}" in modules)


def test_list_on_a_file_destination_loads_no_heavy_library(tmp_path: Path) -> None:
    env = {
        **clean_environ(),
        "PGDATABASE": "shop",
        "BACKUP_DESTINATIONS": f"file://{tmp_path}",
        "BACKUP_LOCK_DIR": str(tmp_path),
    }
    modules = _modules_of_a_run(env, "list")
    assert _heavy(modules) == []
    assert _verbs(modules) == ["list"]
    # list is not told (reporting.tell_outcome): no notifier, no metrics, no database
    assert not {"backup.commands.reporting", "backup.notify", "backup.metrics"} & modules
    assert "psycopg" not in modules


def test_help_imports_no_verb_no_engine_and_no_psycopg() -> None:
    modules = _modules_of_a_run(clean_environ(), "--help")
    assert _verbs(modules) == []
    assert sorted(e for e in ENGINES if f"backup.{e}" in modules) == []
    assert not {"psycopg", "asyncio", "zstandard", "blake3", "tenacity"} & modules
    assert _heavy(modules) == []


def test_version_finds_the_client_tools_without_psycopg() -> None:
    modules = _modules_of_a_run(clean_environ(), "--version")
    assert "backup.postgres.tools" in modules and "psycopg" not in modules


def test_a_verbs_help_imports_that_verb_alone() -> None:
    modules = _modules_of_a_run(clean_environ(), "contents", "--help")
    assert _verbs(modules) == ["contents"]
    assert "backup.dump" not in modules and _heavy(modules) == []


def test_a_backup_to_a_file_destination_imports_its_own_verb_and_engine_only(job_env) -> None:
    modules = _modules_of_a_run(job_env, "backup")
    assert _verbs(modules) == ["backup"]
    assert "backup.dump" in modules  # the probe saw the run
    assert not {"backup.restore", "backup.restore.tables", "backup.storage.s3"} & modules
    # the directory format's hash, Telegram's HTML, suggestions for a typo: none used here
    assert not {"blake3", "html", "difflib"} & modules
    assert _heavy(modules) == []

    # verify without --restore-test reads the archive alone: no database, so no psycopg
    modules = _modules_of_a_run(job_env, "verify")
    assert _verbs(modules) == ["verify"] and "backup.verify" in modules
    assert not {"psycopg", "backup.dump", "backup.restore"} & modules
