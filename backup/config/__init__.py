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
from collections.abc import Mapping, MutableMapping

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


BLANK_MEANS_UNSET = ("PG", "AWS_")
"""Prefixes of the variables libraries read from the process's environment themselves (libpq
in the job's own connections: PGSSLMODE, PGSERVICE, PGSERVICEFILE, ...; botocore:
AWS_DEFAULT_REGION, AWS_PROFILE, ...)."""


def unset_blank_variables(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Remove from ``environ`` (``os.environ`` by default) every variable of
    ``BLANK_MEANS_UNSET`` whose value is empty or blank, and return their names: an empty
    variable counts as unset, for libpq and botocore too (``PGSSLMODE=`` would otherwise be an
    invalid sslmode, ``AWS_DEFAULT_REGION=' '`` an invalid region). Called once, first thing,
    before any thread or connection."""
    environ = os.environ if environ is None else environ
    blank = [n for n, v in environ.items() if n.startswith(BLANK_MEANS_UNSET) and not v.strip()]
    for name in blank:
        del environ[name]
    return blank


def log_format(environ: Mapping[str, str] | None = None) -> str:
    """LOG_FORMAT read leniently (``json`` or ``text``), for what is written before the
    configuration is read or when it is refused (a usage error, a configuration error): every
    line is JSON when JSON was asked for."""
    value = (os.environ if environ is None else environ).get("LOG_FORMAT", "")
    return "json" if value.strip().lower() == "json" else "text"


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
    "log_format",
    "unknown_variables",
    "unset_blank_variables",
]
