"""Object key scheme and manifests, the commit markers of backups.

A backup exists only once its manifest exists: the manifest is written after every byte of the
dump reached the destination, and ``list``, ``restore`` and retention read manifests only.

- ``scheme``: where each backup's object and manifest live, their names, the suffix table;
- ``record``: the ``Manifest``, validated on read, and whether it is believed about its object;
- ``scan``: a destination's manifests sorted into trusted and rejected, the job's ``Scope``,
  and the orphan data objects.
"""

from backup.manifest.record import (
    CUSTOM_FORMAT_VERSION,
    FORMAT_VERSION,
    FORMATS,
    KINDS,
    SAFE_FILE_NAME,
    Manifest,
    files_digest,
    read,
    untrusted_error,
    write,
)
from backup.manifest.scan import (
    Rejected,
    Scan,
    Scope,
    manifest_keys,
    manifest_keys_in,
    orphans,
    read_all,
    scan,
    scan_keys,
    scoped_objects,
)
from backup.manifest.scheme import (
    COMPRESSION_SUFFIX,
    ENCRYPTION_SUFFIX,
    GLOBALS_DIR,
    MANIFEST_SUFFIX,
    STATE_DIR,
    TIMESTAMP_FORMAT,
    backup_name,
    content_key,
    dedup_key_key,
    encode_name,
    globals_name,
    is_content_key,
    manifest_key,
    manifest_key_of_object,
    object_key,
    object_suffix,
    objects_prefix,
    parse_timestamp,
    timestamp,
)

__all__ = [
    "COMPRESSION_SUFFIX",
    "CUSTOM_FORMAT_VERSION",
    "ENCRYPTION_SUFFIX",
    "FORMATS",
    "FORMAT_VERSION",
    "GLOBALS_DIR",
    "KINDS",
    "MANIFEST_SUFFIX",
    "SAFE_FILE_NAME",
    "STATE_DIR",
    "TIMESTAMP_FORMAT",
    "Manifest",
    "Rejected",
    "Scan",
    "Scope",
    "backup_name",
    "content_key",
    "dedup_key_key",
    "encode_name",
    "files_digest",
    "globals_name",
    "is_content_key",
    "manifest_key",
    "manifest_key_of_object",
    "manifest_keys",
    "manifest_keys_in",
    "object_key",
    "object_suffix",
    "objects_prefix",
    "orphans",
    "parse_timestamp",
    "read",
    "read_all",
    "scan",
    "scan_keys",
    "scoped_objects",
    "timestamp",
    "untrusted_error",
    "write",
]
