"""What gets dumped: ``BACKUP_PG_DUMP_ARGS``, ``BACKUP_EXCLUDE_TABLE_DATA``,
``BACKUP_EXCLUDE_DATABASES``, read into ``DumpConfig``.

``BACKUP_PG_DUMP_ARGS`` is split like a shell would (``shlex.split``, never through a shell) and
then read the way pg_dump's own ``getopt_long`` reads it: clustered short options (``-xFp`` is
``-x -F p``), values glued or separate (``-fout``, ``--file=out``, ``--file out``), and long
options abbreviated to any unambiguous prefix (``--form=p`` is ``--format``). Every option the
pipeline owns (output, format, compression, jobs, connection, snapshot, lock timeout), every
option that leaves a backup unable to restore a database (no data, no schema, one section), any
option pg_dump does not have, and every positional argument is refused with the word the user
wrote. An abbreviation is refused when any option it could stand for is refused, so no spelling
reaches pg_dump as a refused option. ``OPTIONS`` is pg_dump 18's option table (older pg_dump
refuses its newer options itself, exit 3).
"""

from __future__ import annotations

import shlex

from backup.config import syntax
from backup.config.model import DumpConfig
from backup.config.reader import Reader

# pg_dump 18's long options and whether each takes a value: src/bin/pg_dump/pg_dump.c,
# long_options[] and the getopt string "abBcCd:e:E:f:F:h:j:n:N:Op:RsS:t:T:U:vwWxXZ:".
OPTIONS: dict[str, bool] = {
    "data-only": False,
    "blobs": False,
    "large-objects": False,
    "no-blobs": False,
    "no-large-objects": False,
    "clean": False,
    "create": False,
    "dbname": True,
    "extension": True,
    "file": True,
    "format": True,
    "host": True,
    "jobs": True,
    "no-reconnect": False,
    "no-owner": False,
    "port": True,
    "schema": True,
    "exclude-schema": True,
    "schema-only": False,
    "superuser": True,
    "table": True,
    "exclude-table": True,
    "no-password": False,
    "password": False,
    "username": True,
    "verbose": False,
    "no-privileges": False,
    "no-acl": False,
    "compress": True,
    "encoding": True,
    "help": False,
    "version": False,
    "attribute-inserts": False,
    "binary-upgrade": False,
    "column-inserts": False,
    "disable-dollar-quoting": False,
    "disable-triggers": False,
    "enable-row-security": False,
    "exclude-table-data": True,
    "extra-float-digits": True,
    "if-exists": False,
    "inserts": False,
    "lock-wait-timeout": True,
    "no-table-access-method": False,
    "no-tablespaces": False,
    "quote-all-identifiers": False,
    "load-via-partition-root": False,
    "role": True,
    "section": True,
    "serializable-deferrable": False,
    "snapshot": True,
    "statistics-only": False,
    "strict-names": False,
    "use-set-session-authorization": False,
    "no-comments": False,
    "no-data": False,
    "no-policies": False,
    "no-publications": False,
    "no-schema": False,
    "no-security-labels": False,
    "no-statistics": False,
    "no-subscriptions": False,
    "no-toast-compression": False,
    "no-unlogged-table-data": False,
    "no-sync": False,
    "on-conflict-do-nothing": False,
    "rows-per-insert": True,
    "include-foreign-data": True,
    "table-and-children": True,
    "exclude-table-and-children": True,
    "exclude-table-data-and-children": True,
    "sync-method": True,
    "filter": True,
    "exclude-extension": True,
    "restrict-key": True,
    "sequence-data": False,
    "statistics": False,
}

SHORT_OPTIONS: dict[str, str] = {
    "a": "data-only",
    "b": "large-objects",
    "B": "no-large-objects",
    "c": "clean",
    "C": "create",
    "d": "dbname",
    "e": "extension",
    "E": "encoding",
    "f": "file",
    "F": "format",
    "h": "host",
    "j": "jobs",
    "n": "schema",
    "N": "exclude-schema",
    "O": "no-owner",
    "p": "port",
    "R": "no-reconnect",
    "s": "schema-only",
    "S": "superuser",
    "t": "table",
    "T": "exclude-table",
    "U": "username",
    "v": "verbose",
    "w": "no-password",
    "W": "password",
    "x": "no-privileges",
    "Z": "compress",
    "?": "help",
    "V": "version",
}

_PIPELINE = "the job writes the archive itself (custom format, uncompressed, to its pipe)"
_CONNECTION = (
    "connections come from the PG* variables or DATABASE_URL, for pg_dump and the job's own "
    "queries alike"
)
_NOT_RESTORABLE = "the backup would not restore a database (it would lack its data or its schema)"

REFUSED: dict[str, str] = {
    "file": _PIPELINE,
    "format": _PIPELINE,
    "compress": _PIPELINE + "; BACKUP_COMPRESSION sets the compression",
    "jobs": _PIPELINE + "; for parallel dumps set BACKUP_FORMAT=directory and BACKUP_JOBS",
    "host": _CONNECTION,
    "port": _CONNECTION,
    "username": _CONNECTION,
    "dbname": _CONNECTION + "; BACKUP_DATABASES names the databases",
    "no-password": _CONNECTION,
    "password": _CONNECTION + "; a job never prompts",
    "role": _CONNECTION + "; the row counts and lock watch would not use the role: set "
    "PGOPTIONS='-c role=NAME' instead",
    "snapshot": "the job sets it (BACKUP_ROW_COUNTS=exact counts rows in the dump's snapshot)",
    "lock-wait-timeout": "the job sets it: use BACKUP_LOCK_WAIT_TIMEOUT",
    "data-only": _NOT_RESTORABLE,
    "schema-only": _NOT_RESTORABLE,
    "no-data": _NOT_RESTORABLE,
    "no-schema": _NOT_RESTORABLE,
    "statistics-only": _NOT_RESTORABLE,
    "section": _NOT_RESTORABLE,
    "binary-upgrade": "it is for pg_upgrade only",
    "restrict-key": "it applies to plain-text output only",
    "help": "pg_dump would print and exit without dumping",
    "version": "pg_dump would print and exit without dumping",
}
"""Long option -> why it is refused."""


class ArgsProblem(ValueError):
    """One refused word of BACKUP_PG_DUMP_ARGS; its text follows the variable's name."""


MAX_PACK_BELOW_KB = 8192
"""BACKUP_PACK_BELOW_KB's ceiling: a file must fit in a pack (``dump/packs.PACK_BYTES``)."""


def split_pg_dump_args(text: str) -> tuple[str, ...]:
    """The words of ``text``, each checked; ``ArgsProblem`` on the first refused one."""
    try:
        words = shlex.split(text)
    except ValueError as err:  # "No closing quotation", "No escaped character"
        raise ArgsProblem(f"cannot be split like a shell would: {str(err).lower()}") from err
    for word in words:
        problem = syntax.character_problem(word)
        if problem:
            raise ArgsProblem(f"has a word that {problem}")
    check_pg_dump_args(words)
    return tuple(words)


def check_pg_dump_args(words: list[str]) -> None:
    """Read ``words`` as pg_dump's getopt_long would; refuse (``ArgsProblem``) any word that
    is, or could be, a refused option, an unknown option or a positional argument."""
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word == "--" or not word.startswith("-") or word == "-":
            raise ArgsProblem(
                f"has the argument {syntax.shown(word)}, which is not an option: pg_dump would "
                "take it as the database name (BACKUP_DATABASES names the databases)"
            )
        if word.startswith("--"):
            name, equals, _ = word[2:].partition("=")
            option = resolve_long(name, word)
            takes_value = OPTIONS[option]
            if equals and not takes_value:
                raise ArgsProblem(f"gives a value to {word.split('=')[0]}, which takes none")
            if takes_value and not equals:
                if i >= len(words):
                    raise ArgsProblem(f"ends with {syntax.shown(word)}, which needs a value")
                i += 1
            continue
        for position in range(1, len(word)):
            letter = word[position]
            option = SHORT_OPTIONS.get(letter)
            shown = f"-{letter}" + (f" (in {syntax.shown(word)})" if len(word) > 2 else "")
            if option is None:
                raise ArgsProblem(f"has {shown}, which is not a pg_dump option")
            if option in REFUSED:
                raise ArgsProblem(f"has {shown} (--{option}), which is refused: {REFUSED[option]}")
            if OPTIONS[option]:
                if position == len(word) - 1:  # the value is the next word
                    if i >= len(words):
                        raise ArgsProblem(f"ends with {syntax.shown(word)}, which needs a value")
                    i += 1
                break  # the rest of the word is the value


def resolve_long(name: str, word: str) -> str:
    """The long option ``--name`` stands for: an exact name, else the only option it is a
    prefix of. Refused when any option it could abbreviate is refused."""
    shown = syntax.shown(word.split("=")[0])
    if name in OPTIONS:
        candidates = [name]
    else:
        candidates = [option for option in OPTIONS if name and option.startswith(name)]
    if not candidates:
        raise ArgsProblem(f"has {shown}, which is not a pg_dump option")
    refused = [option for option in candidates if option in REFUSED]
    if refused:
        spelled = "" if refused == [name] else f" (it could abbreviate --{refused[0]})"
        raise ArgsProblem(f"has {shown}{spelled}, which is refused: {REFUSED[refused[0]]}")
    if len(candidates) > 1:
        raise ArgsProblem(
            f"has {shown}, which is ambiguous: "
            + ", ".join(f"--{option}" for option in candidates[:5])
        )
    return candidates[0]


DUMP_FORMATS = ("custom", "directory")
# pg_dump -j opens one connection per worker: past a few dozen the server, not the job, limits.
MAX_JOBS = 64
MIN_DEDUP_KEY_CHARS = 32


def read_dump(r: Reader, listed_databases: tuple[str, ...]) -> DumpConfig:
    """The three variables of what gets dumped. ``listed_databases``: the databases named by
    BACKUP_DATABASES (or PGDATABASE); excluding one of them is a contradiction, refused."""
    args: tuple[str, ...] = ()
    raw = r.str("BACKUP_PG_DUMP_ARGS")
    if raw:
        try:
            args = split_pg_dump_args(raw)
        except ArgsProblem as err:
            r.problems.append(f"BACKUP_PG_DUMP_ARGS {err}")
            r.hints.append(
                "BACKUP_PG_DUMP_ARGS takes pg_dump's object and output options (-T, -n, "
                "--exclude-table-data, --no-owner, ...); the job owns the output and connection"
            )
    patterns = tuple(dict.fromkeys(r.csv("BACKUP_EXCLUDE_TABLE_DATA")))
    excluded = tuple(dict.fromkeys(r.csv("BACKUP_EXCLUDE_DATABASES")))
    for name in excluded:
        if len(name.encode()) > 63:
            r.problems.append(
                f"BACKUP_EXCLUDE_DATABASES: {syntax.shown(name)} is longer than 63 bytes"
            )
    both = [name for name in excluded if name in listed_databases]
    if both:
        r.problems.append(
            "BACKUP_EXCLUDE_DATABASES names a database the job is told to back up "
            "(BACKUP_DATABASES or PGDATABASE): "
            + ", ".join(map(syntax.shown, both))
            + ": remove it from one of them"
        )
    dump_format = r.choice("BACKUP_FORMAT", "custom", DUMP_FORMATS)
    jobs = r.int("BACKUP_JOBS", 1, 1, MAX_JOBS) or 1
    dedup_key = r.secret("BACKUP_DEDUP_KEY")
    pack_below_kb = r.int("BACKUP_PACK_BELOW_KB", 1024, 0, MAX_PACK_BELOW_KB)
    if dedup_key is not None and len(dedup_key.reveal()) < MIN_DEDUP_KEY_CHARS:
        r.problems.append(
            f"BACKUP_DEDUP_KEY is shorter than {MIN_DEDUP_KEY_CHARS} characters: "
            "make one with 'openssl rand -hex 32'"
        )
    return DumpConfig(
        pg_dump_args=args,
        exclude_table_data=patterns,
        exclude_databases=excluded,
        format=dump_format,
        jobs=jobs,
        dedup_key=dedup_key,
        pack_below_bytes=(1024 if pack_below_kb is None else pack_below_kb) * 1024,
    )
