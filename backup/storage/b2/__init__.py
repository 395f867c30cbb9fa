"""Backblaze B2 through its native API (b2sdk): ``storage.py`` (the backend), ``large_file.py``
(the streaming upload, in growing parts) and ``errors.py`` (what each b2sdk error means to the
user)."""

from backup.storage.b2.storage import B2Storage

__all__ = ["B2Storage"]
