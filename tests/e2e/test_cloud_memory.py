"""Memory of a backup to gs:// and az:// and of a restore from them, through the real job
against gcp-storage-emulator and Azurite: the same ~300 MB dump as tests/e2e/test_memory.py,
the peak of the job's process tree checked against a bound. The measured figures and the 1 GB
runs of ``make bench`` (ways backup-gs, backup-az) are in docs/performance.md."""

from __future__ import annotations

import pytest

from tests.conftest import unique_name
from tests.e2e import test_memory
from tests.e2e.test_memory import ROWS, _assert_bounded, _count, run_measured

blank_db = test_memory.blank_db
# Measured here: 99 MiB (gs) and 89 MiB (az) for the tree, S3's backup 99. What it holds
# (docs/performance.md): the client libraries' imports (google-cloud-storage with google-auth,
# requests and cryptography's 7 MiB: 23 MiB; azure-storage-blob with requests, cryptography
# deferred by storage/azure/library.py: 13 MiB), pg_dump's 13 MiB, two zstd workers and one
# 8 MiB part: gs:// and az:// send their parts one at a time (tests/contract/test_gcs.py and
# test_azure.py check it). The emulators answer at once, so a second part held while one is in
# flight would hardly show here; on a real network it is 8 MiB. Each bound catches a regression
# of a few MiB (cryptography loaded again for az://, a library imported for nothing), not the
# 100 MB target, which gs:// does not meet by this measure (docs/performance.md says why).
CLOUD_BACKUP_BOUND_MIB = {"gs": 106, "az": 95}


@pytest.mark.parametrize("cloud", ["gs", "az"])
def test_backup_to_and_restore_from_a_cloud_stay_under_the_memory_bound(
    pg15, blank_db, tmp_path, gcs_server, azurite, cloud
):
    if cloud == "gs":
        url = f"gs://{gcs_server.create_bucket()}/memory"
        store = {"STORAGE_EMULATOR_HOST": gcs_server.endpoint_url}
    else:
        url = f"az://{azurite.create_container()}/memory"
        store = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    env = pg15.env(blank_db, BACKUP_DESTINATIONS=url, BACKUP_LOCK_DIR=str(tmp_path), **store)
    backup = run_measured("backup", env=env)
    print(f"backup to {cloud}://: tree {backup.tree_mib:.0f} MiB, process {backup.process_mib:.0f}")
    _assert_bounded(backup, f"backup to {cloud}://", CLOUD_BACKUP_BOUND_MIB[cloud])
    target = unique_name(f"blanks_from_{cloud}")
    restore = run_measured("restore", "--target-db", target, "--force", env=env)
    print(f"restore from {cloud}://: tree {restore.tree_mib:.0f} MiB")
    _assert_bounded(restore, f"restore from {cloud}://")
    assert _count(pg15, target) == ROWS
