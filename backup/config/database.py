"""The source database's settings: the libpq variables, ``DATABASE_URL``, ``BACKUP_DATABASES``.

``read_postgres`` fills ``PostgresConfig``; the password never leaves a ``Secret`` and is never
quoted in a problem (a ``DATABASE_URL`` is never quoted at all).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

from backup.config import syntax
from backup.config.model import PostgresConfig, Secret
from backup.config.reader import Reader
from backup.config.scale import MAX_PARALLEL_DATABASES, MAX_SHARDS, ScaleConfig

LIBPQ_PASSTHROUGH = (
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGCONNECT_TIMEOUT",
    "PGOPTIONS",
    "PGAPPNAME",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGTARGETSESSIONATTRS",
)


# Values libpq accepts for the pass-through variables that take one of a few words:
# https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-PARAMKEYWORDS
LIBPQ_CHOICES = {
    "PGSSLMODE": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "PGTARGETSESSIONATTRS": (
        "any",
        "read-write",
        "read-only",
        "primary",
        "standby",
        "prefer-standby",
    ),
}


def read_postgres(r: Reader) -> PostgresConfig:
    """The source server: PG* variables, DATABASE_URL (its parts win), BACKUP_DATABASES."""
    host = r.check("PGHOST", r.str("PGHOST"), syntax.pghost_problem)
    port = r.check("PGPORT", r.str("PGPORT"), syntax.port_problem)
    user, password, database = r.str("PGUSER"), r.secret("PGPASSWORD"), r.str("PGDATABASE")
    named_by = "PGDATABASE"  # the variable a refused database name is reported under
    extra: dict[str, str] = {}
    for name in LIBPQ_PASSTHROUGH:
        value = r.str(name)
        if value is not None and name in LIBPQ_CHOICES:
            value = r.choice(name, "", LIBPQ_CHOICES[name]) or None
        elif value is not None and name == "PGCONNECT_TIMEOUT":
            seconds = r.int(name, None, 0, 3600)
            value = None if seconds is None else str(seconds)
        if value:
            extra[name] = value
    url = read_url(r, "DATABASE_URL", r.secret("DATABASE_URL"))
    if url is not None:
        # The URL is split into libpq variables so the password travels in the child's
        # environment, never in its argv.
        host = url.host or host
        port = url.port or port
        user = url.user or user
        password = url.password or password
        if url.database:
            database = url.database
            named_by = "DATABASE_URL's database"
        extra.update(url.extra_env)
    listed = r.csv("BACKUP_DATABASES")
    all_databases = len(listed) == 1 and listed[0].lower() == "all"
    if all_databases:
        databases: tuple[str, ...] = ()
    elif listed:
        if any(name.lower() == "all" for name in listed):
            r.problems.append("BACKUP_DATABASES: 'all' cannot be combined with names")
        databases = tuple(dict.fromkeys(listed))
        named_by = "BACKUP_DATABASES"
    else:
        # No libpq default (the database named like the user, often the empty "postgres"):
        # with none named, the commands that back up refuse to guess (require_databases).
        databases = (database,) if database else ()
    for name in databases:
        # PostgreSQL's identifiers: at most NAMEDATALEN - 1 = 63 bytes.
        if len(name.encode()) > 63:
            r.problems.append(f"{named_by}: {syntax.shown(name)} is longer than 63 bytes")
    return PostgresConfig(
        host=host,
        port=port,
        user=user,
        password=password,
        database=database,
        databases=databases,
        all_databases=all_databases,
        extra_env=tuple(sorted(extra.items())),
    )


@dataclass(frozen=True)
class UrlParts:
    """What a ``postgresql://`` URL names, as libpq variables."""

    host: str | None
    port: str | None
    user: str | None
    password: Secret | None
    database: str | None
    extra_env: dict[str, str]


def read_url(r: Reader, name: str, url: Secret | None) -> UrlParts | None:
    """The parts of the connection URL in variable ``name`` (``DATABASE_URL``,
    ``VERIFY_DATABASE_URL``), its parameters checked as libpq would read them; ``None`` when
    unset or refused (each problem named after ``name``; the URL itself is never quoted back:
    it may hold the password)."""
    if not url:
        return None
    parts, problem = syntax.postgres_url_problem(url.reveal())
    if problem or parts is None:
        r.problems.append(f"{name} {problem}")
        return None
    before = len(r.problems)
    extra: dict[str, str] = {}
    for key, value in parse_qsl(parts.query):
        env_name = URL_PARAMETERS.get(key)
        if not env_name:
            continue
        if syntax.character_problem(value):
            r.problems.append(f"{name}'s {key} parameter {syntax.character_problem(value)}")
        elif env_name in LIBPQ_CHOICES and value not in LIBPQ_CHOICES[env_name]:
            r.problems.append(
                f"{name}'s {key}={syntax.shown(value)} must be one of: "
                + ", ".join(LIBPQ_CHOICES[env_name])
            )
        elif env_name == "PGCONNECT_TIMEOUT" and not (value.isascii() and value.isdigit()):
            r.problems.append(f"{name}'s {key}={syntax.shown(value)} is not a whole number")
        else:
            extra[env_name] = value
    if len(r.problems) > before:
        return None
    try:
        port = str(parts.port) if parts.port else None
    except ValueError:  # checked by postgres_url_problem; kept safe
        port = None
    return UrlParts(
        host=unquote(parts.hostname) if parts.hostname else None,
        port=port,
        user=unquote(parts.username) if parts.username else None,
        password=Secret(unquote(parts.password)) if parts.password else None,
        database=unquote(parts.path.strip("/")) or None,
        extra_env=extra,
    )


URL_PARAMETERS = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
    "options": "PGOPTIONS",
}
"""DATABASE_URL's parameters that become libpq variables; the others are ignored."""


def read_scale(r: Reader) -> ScaleConfig:
    """BACKUP_PARALLEL_DATABASES, BACKUP_SHARDS and the pod's shard index: BACKUP_SHARD_INDEX,
    else JOB_COMPLETION_INDEX (read only when BACKUP_SHARDS is set: a plain Indexed Job is
    not a sharded one). An index out of 0..BACKUP_SHARDS-1 is refused here; a missing one by
    the commands that need it (``ScaleConfig.require_index``)."""
    parallel = r.int("BACKUP_PARALLEL_DATABASES", 1, 1, MAX_PARALLEL_DATABASES) or 1
    shards = r.int("BACKUP_SHARDS", None, 1, MAX_SHARDS)
    own = r.int("BACKUP_SHARD_INDEX", None, 0, MAX_SHARDS - 1)
    # Always asked for (the registry of known variables is what is read), parsed only here.
    given = None
    if r.str("JOB_COMPLETION_INDEX") is not None and shards is not None:
        given = r.int("JOB_COMPLETION_INDEX", None, 0, 1_000_000)
    if shards is None:
        if own is not None:
            r.problems.append("BACKUP_SHARD_INDEX is set without BACKUP_SHARDS")
        return ScaleConfig(parallel_databases=parallel)
    if own is not None:
        index, named = own, "BACKUP_SHARD_INDEX"
    else:
        index, named = given, "JOB_COMPLETION_INDEX"
    if index is not None and index >= shards:
        r.problems.append(
            f"{named}={index} is not a shard of BACKUP_SHARDS={shards}: it must be between 0 "
            f"and {shards - 1}"
        )
        r.hints.append("the Indexed Job's completions and parallelism must equal BACKUP_SHARDS")
        index = None
    return ScaleConfig(parallel_databases=parallel, shards=shards, shard_index=index)
