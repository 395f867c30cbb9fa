"""The directory format (``BACKUP_FORMAT=directory``): pg_dump -Fd's files, each stored once
under a content address in its database's ``_objects/`` folder and shared by every backup that
holds the same file; the manifest lists them.

- ``address``: the content address (keyed HMAC-SHA256) and where its key comes from;
- ``watch``: which files pg_dump has finished writing (inotify);
- ``store``: the backup side, from pg_dump to the content objects;
- ``fetch``: the read side, from the content objects to a folder pg_restore reads.
"""
