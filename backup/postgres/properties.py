"""A database's own properties as an archive records them, rewritten for the database restored.

``pg_dump -Fc`` keeps what belongs to the database itself, not to an object in it, in a few TOC
entries (``DATABASE``, ``DATABASE PROPERTIES``, and ``COMMENT`` / ``ACL`` / ``SECURITY LABEL``
on ``DATABASE <name>``): its owner, ``ALTER DATABASE ... SET``, ``ALTER ROLE ... IN DATABASE ...
SET``, its comment, security labels and grants. ``pg_restore --create`` prints them under the
dumped database's name; a restore into ``<db>_restoring_<ts>`` (or another ``--target-db``) needs
them under another name.

Nothing here interpolates text into SQL: each statement is recognised by its shape (a small
whitelist of what pg_dump 11 to 18 writes for those entries), the database name in it is
replaced by a quoted ``sql.Identifier``, and the rest is kept verbatim, as pg_dump wrote it. A
statement of another shape is never run: it is returned in ``skipped`` for the caller to report.
Pure code: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # psycopg is imported by what runs the statements, not by what reads them
    from psycopg import sql

# The TOC entry types holding the database's own properties (``pg_restore --list`` lines:
# "<id>; <catalog> <oid> <TYPE> <schema> <tag> <owner>").
_TOC_LINE = re.compile(
    r"^\d+; \d+ \d+ "
    r"(?:DATABASE PROPERTIES - |DATABASE - |(?:COMMENT|ACL|SECURITY LABEL) - DATABASE )"
)

# An SQL identifier as pg_dump's fmtId writes it: bare, or double-quoted with "" doubled.
_ID = r'(?:"(?:[^"]|"")+"|[^\s";,()]+)'

# Statements of those entries, by shape. Group "db" is the name replaced; the rest is kept.
_SHAPES: list[tuple[str, re.Pattern[str]]] = [
    ("owner", re.compile(rf"^(ALTER DATABASE )(?P<db>{_ID})( OWNER TO {_ID})$", re.S)),
    (
        "setting",
        re.compile(
            rf"^(ALTER DATABASE )(?P<db>{_ID})( (?:SET|RESET) .+|"
            r" CONNECTION LIMIT = -?\d+| IS_TEMPLATE = (?:true|false)|"
            r" ALLOW_CONNECTIONS = (?:true|false))$",
            re.S,
        ),
    ),
    (
        "role setting",
        re.compile(rf"^(ALTER ROLE {_ID} IN DATABASE )(?P<db>{_ID})( (?:SET|RESET) .+)$", re.S),
    ),
    ("comment", re.compile(rf"^(COMMENT ON DATABASE )(?P<db>{_ID})( IS '.*')$", re.S)),
    (
        "security label",
        re.compile(rf"^(SECURITY LABEL FOR {_ID} ON DATABASE )(?P<db>{_ID})( IS .+)$", re.S),
    ),
    (
        "grant",
        re.compile(
            rf"^((?:GRANT|REVOKE) (?:GRANT OPTION FOR )?[A-Z, ]+ ON DATABASE )(?P<db>{_ID})"
            r"( (?:TO|FROM) .+)$",
            re.S,
        ),
    ),
    # pg_dump brackets grants made by another role than the owner with these two.
    (
        "grantor",
        re.compile(rf"^((?:SET SESSION AUTHORIZATION {_ID})|RESET SESSION AUTHORIZATION)()()$"),
    ),
]
# The script's own session setup and the database's creation (the restore creates it).
_IGNORED = re.compile(
    r"^(?:SET (?!SESSION AUTHORIZATION )|SELECT pg_catalog\.set_config\(|CREATE DATABASE )", re.S
)


def database_toc_lines(listing: str) -> list[str]:
    """The ``pg_restore --create --list`` lines of the entries holding database properties."""
    return [line for line in listing.splitlines() if _TOC_LINE.match(line)]


def split_statements(script: str) -> list[str]:
    """The SQL statements of a pg_restore script, without comments and psql meta-commands.

    Quotes ('...' with '' doubled, "..." with "" doubled) are respected, so a comment text
    holding ``;`` or a newline stays in its statement."""
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(script)
    at_start = True
    while i < n:
        ch = script[i]
        if at_start and ch in " \t\r\n":
            i += 1
            continue
        if at_start and (ch == "\\" or script.startswith("--", i)):
            end = script.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        at_start = False
        if ch in "'\"":
            end = i + 1
            while end < n:
                if script[end] == ch:
                    if end + 1 < n and script[end + 1] == ch:
                        end += 2
                        continue
                    break
                end += 1
            current.append(script[i : end + 1])
            i = end + 1
            continue
        if ch == ";":
            statements.append("".join(current).strip())
            current = []
            at_start = True
            i += 1
            continue
        current.append(ch)
        i += 1
    rest = "".join(current).strip()
    if rest:
        statements.append(rest)
    return statements


@dataclass(frozen=True)
class Statement:
    kind: str
    before: str
    after: str

    def for_database(self, name: str) -> sql.Composed:
        from psycopg import sql  # verify and contents parse archives without connecting

        if self.kind == "grantor":
            return sql.Composed([sql.SQL(self.before)])
        return sql.Composed([sql.SQL(self.before), sql.Identifier(name), sql.SQL(self.after)])


@dataclass(frozen=True)
class DatabaseProperties:
    """What to run to give a database the properties of the archived one, and what was not
    recognised (never run)."""

    statements: list[Statement] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    # How the database was created (ENCODING, LC_COLLATE, LC_CTYPE, LOCALE_PROVIDER, TABLESPACE):
    # the restore creates its database with the server's defaults and compares.
    creation: dict[str, str] = field(default_factory=dict)

    def for_database(self, name: str) -> list[sql.Composed]:
        return [s.for_database(name) for s in self.statements]

    def kinds(self) -> list[str]:
        return sorted({s.kind for s in self.statements if s.kind != "grantor"})


def parse_script(script: str) -> DatabaseProperties:
    """The statements of ``pg_restore --create -L <database entries> -f -``, by shape."""
    statements: list[Statement] = []
    skipped: list[str] = []
    creation: dict[str, str] = {}
    for text in split_statements(script):
        if text.startswith("CREATE DATABASE "):
            creation = creation_options(text)
        if _IGNORED.match(text):
            continue
        for kind, shape in _SHAPES:
            match = shape.match(text)
            if match:
                statements.append(Statement(kind, match.group(1), match.group(3)))
                break
        else:
            skipped.append(text)
    return DatabaseProperties(statements, skipped, creation)


_OPTION = re.compile(r"\b([A-Z_]+) = ('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|[^\s;]+)")


def creation_options(create: str) -> dict[str, str]:
    """The options of pg_dump's ``CREATE DATABASE ... WITH ...``, unquoted; ``LOCALE`` is
    spelt out as ``LC_COLLATE`` and ``LC_CTYPE``."""
    _, _, options = create.partition(" WITH ")
    found: dict[str, str] = {}
    for key, raw in _OPTION.findall(options):
        value = raw
        if raw[:1] in "'\"":
            value = raw[1:-1].replace(raw[0] * 2, raw[0])
        found[key] = value
    if "LOCALE" in found and found.get("LOCALE_PROVIDER", "libc") == "libc":
        found.setdefault("LC_COLLATE", found["LOCALE"])
        found.setdefault("LC_CTYPE", found["LOCALE"])
    found.setdefault("TABLESPACE", "pg_default")
    wanted = ("ENCODING", "LC_COLLATE", "LC_CTYPE", "LOCALE_PROVIDER", "TABLESPACE")
    return {key: found[key] for key in wanted if key in found}
