"""The benchmark's gs:// and az:// destinations: gcp-storage-emulator and Azurite started by the
tests' own fixtures (tests/fixtures/clouds.py), one bucket and one container, the job's
environment for them, and what a way left there (listed, then removed).

The servers run outside the job's process tree, so the memory measured is the job's alone; the
GCS emulator holds every object in its own memory (--in-memory)."""

from __future__ import annotations

import contextlib
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KINDS = ("gs", "az")
HINT = "run make deps (scripts/install-deps.sh test installs gcp-storage-emulator and Azurite)"


def available() -> set[str]:
    """The cloud kinds whose local server is installed."""
    found = set()
    if shutil.which("gcp-storage-emulator", path=str(Path(sys.prefix) / "bin")):
        found.add("gs")
    if (Path(sys.prefix) / "azurite" / "node_modules" / ".bin" / "azurite-blob").exists():
        found.add("az")
    return found


@dataclass
class Clouds:
    gcs: Any = None  # tests.fixtures.clouds.GCSServer
    bucket: str = ""
    azurite: Any = None  # tests.fixtures.clouds.AzuriteServer
    container: str = ""

    @classmethod
    def start(cls, kinds: set[str], work: Path, stack: contextlib.ExitStack) -> Clouds:
        from tests.fixtures.clouds import running_azurite, running_gcs_emulator

        clouds = cls()
        if "gs" in kinds:
            (work / "gcs").mkdir(exist_ok=True)
            clouds.gcs = stack.enter_context(running_gcs_emulator(work / "gcs"))
            clouds.bucket = clouds.gcs.create_bucket()
        if "az" in kinds:
            (work / "azurite").mkdir(exist_ok=True)
            clouds.azurite = stack.enter_context(running_azurite(work / "azurite"))
            clouds.container = clouds.azurite.create_container()
        return clouds

    def env(self) -> dict[str, str]:
        env = {}
        if self.gcs is not None:
            env["STORAGE_EMULATOR_HOST"] = self.gcs.endpoint_url
        if self.azurite is not None:
            env["AZURE_STORAGE_CONNECTION_STRING"] = self.azurite.connection_string
        return env

    def destination(self, kind: str, prefix: str) -> str:
        return f"gs://{self.bucket}/{prefix}" if kind == "gs" else f"az://{self.container}/{prefix}"

    def listing(self, url: str) -> dict[str, int]:
        """Every object under the URL's prefix: key -> size."""
        prefix = url.split("://", 1)[1].partition("/")[2]
        if url.startswith("gs://"):
            client = self._gcs_client()
            return {b.name: int(b.size) for b in client.list_blobs(self.bucket, prefix=prefix)}
        container = self._container()
        return {b.name: int(b.size) for b in container.list_blobs(name_starts_with=prefix)}

    def remove(self, url: str) -> None:
        keys = list(self.listing(url))
        if url.startswith("gs://"):
            bucket = self._gcs_client().bucket(self.bucket)
            for key in keys:
                bucket.delete_blob(key)
        else:
            container = self._container()
            for key in keys:
                container.delete_blob(key)

    def _gcs_client(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project="bench",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.gcs.endpoint_url},
        )

    def _container(self) -> Any:
        from azure.storage.blob import ContainerClient

        return ContainerClient.from_connection_string(
            self.azurite.connection_string, self.container
        )
