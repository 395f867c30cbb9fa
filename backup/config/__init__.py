"""Configuration: the environment (and ``*_FILE`` secrets) parsed once into frozen dataclasses.

``load(environ)`` reports every problem in one ``ConfigError`` naming each variable. Nothing
else in the package reads ``os.environ``; each part receives only its slice of ``Config``.

- ``model.py``: the frozen dataclasses, ``Secret``, and the limits they carry;
- ``environment.py``: reading and validating every variable of the contract; the registry of
  known variables and ``unknown_variables`` (typos with a suggestion);
- ``reader.py``: the ``Reader``, one typed and bounded variable at a time, problems collected;
- ``database.py``: the source server's variables (libpq's, ``DATABASE_URL``, the databases);
- ``codec.py``: compression and encryption (a setting that names a key encrypts or is refused);
- ``notify_settings.py``: the notification channels' settings and how messages are worded;
- ``dump_options.py``: what gets dumped (``BACKUP_PG_DUMP_ARGS`` checked as pg_dump reads it,
  ``BACKUP_EXCLUDE_TABLE_DATA``, ``BACKUP_EXCLUDE_DATABASES``);
- ``syntax.py``: the rules of values (lengths, characters, URLs, hosts, ports, regions, buckets);
- ``files.py``: reading a ``NAME_FILE`` safely (a regular file, bounded, UTF-8);
- ``age_keys.py``: age recipients and identities parsed with pyrage (also used by the stream);
- ``destination.py``: parsing a destination URL (``b2://``, ``s3://``, ``gs://``, ``azure://``,
  ``file://``);
- ``clouds.py``: the credentials of gs:// and azure:// destinations, checked before anything runs.
- ``variables.py``: the table of every variable (default, meaning, group, the commands that
  use it) that ``--help`` shows; text only, it reads no value.

This package is a leaf: it imports nothing of the job but ``backup.errors``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from backup.config.destination import SCHEMES, Destination
from backup.config.environment import parse
from backup.config.environment import unknown_variables as _unknown_variables
from backup.config.model import (
    DEFAULT_PART_SIZE_MB,
    MAX_PART_SIZE_MB,
    MIB,
    MIN_PART_SIZE_MB,
    AzureConfig,
    B2Config,
    CodecConfig,
    Config,
    DumpConfig,
    GCSConfig,
    LogConfig,
    MetricsConfig,
    NotifyConfig,
    PostgresConfig,
    RetentionPolicy,
    RetryConfig,
    S3Config,
    ScaleConfig,
    Secret,
    StorageConfig,
)


def load(environ: Mapping[str, str] | None = None) -> Config:
    """Parse the environment (``os.environ`` by default) into a ``Config``; raise one
    ``ConfigError`` listing every problem found, each naming its variable."""
    return parse(os.environ if environ is None else environ)


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[tuple[str, str | None]]:
    """``(name, suggestion)`` for each variable of ``environ`` (``os.environ`` by default) with
    one of the job's prefixes that the job does not read (a typo: its value is ignored);
    ``suggestion`` is the closest variable the job reads, or ``None``."""
    return _unknown_variables(environ)


__all__ = [
    "DEFAULT_PART_SIZE_MB",
    "MAX_PART_SIZE_MB",
    "MIB",
    "MIN_PART_SIZE_MB",
    "SCHEMES",
    "AzureConfig",
    "B2Config",
    "CodecConfig",
    "Config",
    "Destination",
    "DumpConfig",
    "GCSConfig",
    "LogConfig",
    "MetricsConfig",
    "NotifyConfig",
    "PostgresConfig",
    "RetentionPolicy",
    "RetryConfig",
    "S3Config",
    "ScaleConfig",
    "Secret",
    "StorageConfig",
    "load",
    "unknown_variables",
]
