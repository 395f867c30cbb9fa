"""A short run pays only for the libraries it uses (STYLE.md: backends imported lazily).

``list`` on a file:// destination, with no notifier, no metrics and no encryption, must not
load boto3, b2sdk, requests, prometheus_client, pyrage or apprise: each costs start-up time and
memory (apprise about 0.5 s and 30 MB with its plugins).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, clean_environ

HEAVY = ("boto3", "botocore", "b2sdk", "requests", "prometheus_client", "pyrage", "apprise")
HEAVY += ("google", "azure", "msal")  # gs:// and az:// libraries, azure-identity's too

PROBE = """
import atexit, runpy, sys
def loaded():
    heavy = {HEAVY!r}
    print("LOADED", sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy)), file=sys.stderr)
atexit.register(loaded)
sys.argv = ["entrypoint.py", "list"]
runpy.run_path("entrypoint.py", run_name="__main__")
"""


def test_list_on_a_file_destination_loads_no_heavy_library(tmp_path: Path) -> None:
    env = {
        **clean_environ(),
        "PGDATABASE": "shop",
        "BACKUP_DESTINATIONS": f"file://{tmp_path}",
        "BACKUP_LOCK_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(HEAVY=HEAVY)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stderr, result.stderr
