"""Azure Blob Storage through azure-storage-blob: ``storage.py`` (the backend), ``blocks.py``
(streaming uploads as staged blocks), ``errors.py`` (what Azure errors mean), ``library.py``
(the library imported without its client-side encryption's cryptography)."""

from backup.storage.azure.library import import_blob_library

import_blob_library()  # before storage.py's own imports of it: they then find it loaded

from backup.storage.azure.storage import AzureStorage  # noqa: E402

__all__ = ["AzureStorage"]
