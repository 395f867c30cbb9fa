"""Azure Blob Storage through azure-storage-blob: ``storage.py`` (the backend), ``blocks.py``
(streaming uploads as staged blocks), ``errors.py`` (what Azure errors mean)."""

from backup.storage.azure.storage import AzureStorage

__all__ = ["AzureStorage"]
