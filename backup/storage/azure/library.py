"""azure-storage-blob imported without cryptography: its client-side encryption, which this job
never configures, is the only part that needs it.

azure-storage-blob's ``_encryption.py`` (a base class of every client) imports six cryptography
modules at the top, and with them cryptography's compiled library: 7 MiB of the job's resident
memory (docs/performance.md) for code that runs only with a ``key_encryption_key``. So
``import_blob_library`` imports azure-storage-blob while those six modules (and their parents)
are stand-ins in ``sys.modules``: a name taken from a stand-in is a ``_Deferred`` that imports
the real module and calls the real thing when it is first used. The stand-ins are removed
before the function returns, so any later ``import cryptography...`` (age encryption,
azure-identity's msal) gets the real modules. When cryptography or azure-storage-blob is already
imported, this changes nothing.

If a later azure-storage-blob used one of these names while it is imported (a subclass, an
``isinstance`` at module level), its import would fail here: the contract suite
(tests/contract) imports and exercises it, and ``make lock`` runs it on every upgrade.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types
from typing import Any

# What azure/storage/blob/_encryption.py imports (azure-storage-blob 12.x), and the parents.
DEFERRED = (
    "cryptography",
    "cryptography.hazmat",
    "cryptography.hazmat.backends",
    "cryptography.hazmat.primitives",
    "cryptography.hazmat.primitives.ciphers",
    "cryptography.hazmat.primitives.ciphers.aead",
    "cryptography.hazmat.primitives.ciphers.algorithms",
    "cryptography.hazmat.primitives.ciphers.modes",
    "cryptography.hazmat.primitives.padding",
)
_LOCK = threading.Lock()


class _Deferred:
    """``module.name``, imported when first called or read from."""

    def __init__(self, module: str, name: str) -> None:
        self._module = module
        self._name = name

    def _real(self) -> Any:
        return getattr(importlib.import_module(self._module), self._name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._real()(*args, **kwargs)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._real(), attribute)


class _StandIn(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Deferred(self.__name__, name)


def import_blob_library() -> None:
    """Import azure-storage-blob, its cryptography imports deferred (see the module docstring)."""
    with _LOCK:
        if "azure.storage.blob" in sys.modules or "cryptography" in sys.modules:
            importlib.import_module("azure.storage.blob")
            return
        sys.modules.update({name: _StandIn(name) for name in DEFERRED})
        try:
            importlib.import_module("azure.storage.blob")
        finally:
            for name in DEFERRED:
                sys.modules.pop(name, None)
