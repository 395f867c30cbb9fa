"""Storage backends behind one small protocol; see ``base.py`` for what each guarantees."""

from backup.storage.base import BACKENDS, Destination, ObjectInfo, Storage, open_storage

__all__ = ["BACKENDS", "Destination", "ObjectInfo", "Storage", "open_storage"]
