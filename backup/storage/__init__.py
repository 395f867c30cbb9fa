"""Storage backends behind one small protocol (``base.py`` says what each guarantees).

One backend per URL scheme, chosen from ``BACKENDS`` and imported only when a destination uses
it, so a user without boto3 can still use B2. To add a backend: a module (or folder) with a class
that implements every member of ``base.Storage``, its scheme in ``backup.config.SCHEMES``, one
line here, and its harness in ``tests/contract/conftest.py`` so the shared contract suite runs
against it.
"""

from __future__ import annotations

import importlib

from backup.config import Destination, StorageConfig
from backup.errors import ConfigError
from backup.storage.base import ObjectInfo, Readable, Storage

# scheme -> "module:Class", imported lazily; one for each of backup.config.SCHEMES.
BACKENDS: dict[str, str] = {
    "file": "backup.storage.local:LocalStorage",
    "s3": "backup.storage.s3:S3Storage",
    "b2": "backup.storage.b2:B2Storage",
    "gs": "backup.storage.gcs:GCSStorage",
    "azure": "backup.storage.azure:AzureStorage",
    "az": "backup.storage.azure:AzureStorage",
}


def open_storage(destination: Destination, config: StorageConfig) -> Storage:
    """Build the backend for ``destination``; imports its module only now."""
    module_name, _, class_name = BACKENDS[destination.scheme].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(
            f"{destination.scheme}:// destinations need a library that is not installed: {err}",
            hint="install the project with 'pip install .' to get every backend",
        ) from err
    backend: type[Storage] = getattr(module, class_name)
    return backend.from_destination(destination, config)


def open_all(
    config: StorageConfig, only: str | None = None, first: str | None = None
) -> list[Storage]:
    """A backend for every configured destination, in order; ``first`` (if given) in front, to
    be read before the others. ``only`` opens that one destination alone. Both may name a
    destination outside the configuration (``list`` or ``restore`` from a second copy)."""
    urls = [only] if only else list(config.destinations)
    if first and not only:
        urls = [first, *(url for url in urls if url != first)]
    return [open_storage(Destination.parse(url), config) for url in urls]


__all__ = ["BACKENDS", "ObjectInfo", "Readable", "Storage", "open_all", "open_storage"]
