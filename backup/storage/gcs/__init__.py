"""Google Cloud Storage through google-cloud-storage: ``storage.py`` (the backend),
``resumable.py`` (streaming uploads in a resumable session), ``errors.py`` (what GCS errors
mean)."""

from backup.storage.gcs.storage import GCSStorage

__all__ = ["GCSStorage"]
