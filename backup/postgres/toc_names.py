"""The exact names of an archive's objects, and which of them a database already has.

``pg_restore --list`` prints names unquoted (a name with spaces cannot be told from the next
field), so the exact names come from the SQL pg_restore writes for those entries
(``pg_restore --use-list L --verbose --file -``): each entry's ``-- TOC entry <id>`` comment,
then its ``CREATE`` statement, quoted as SQL quotes it (``CREATE TABLE "Odd Schema"."T x" (``).
A function's argument types come from its ``-- Name: f(integer, s1.mood); Type: FUNCTION``
line, formatted by pg_dump with an empty search_path, so schema-qualified where needed.

``present`` asks a database which of these objects it has (``to_regclass``, ``to_regtype``,
``to_regprocedure``, ...): what a chosen table depends on and the target lacks is restored
with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg

IDENT = r'(?:"(?:[^"]|"")*"|[^\s."(;]+)'
_TOC_COMMENT = re.compile(r"^-- TOC entry (\d+) ", re.MULTILINE)
_CREATE = re.compile(
    r"^CREATE (?:OR REPLACE )?(?:UNLOGGED )?(TABLE|VIEW|MATERIALIZED VIEW|FOREIGN TABLE|SEQUENCE"
    rf"|TYPE|DOMAIN|FUNCTION|PROCEDURE|AGGREGATE|COLLATION) ({IDENT})\.({IDENT})[ (;\n]",
    re.MULTILINE,
)
_CREATE_SCHEMA = re.compile(rf"^CREATE SCHEMA ({IDENT});", re.MULTILINE)
_NAME_LINE = re.compile(r"^-- Name: (.*); Type: ([A-Z ]+); Schema: ", re.MULTILINE)
_PLAIN_IDENT = re.compile(r"[a-z_][a-z0-9_$]*")
_ROUTINES = frozenset({"FUNCTION", "PROCEDURE", "AGGREGATE"})
# The lookup that says whether a database has an object of each kind (NULL: it does not).
_LOOKUP = {
    "SCHEMA": "to_regnamespace",
    "TYPE": "to_regtype",
    "DOMAIN": "to_regtype",
    "FUNCTION": "to_regprocedure",
    "PROCEDURE": "to_regprocedure",
    "AGGREGATE": "to_regprocedure",
    "SEQUENCE": "to_regclass",
    "TABLE": "to_regclass",
    "VIEW": "to_regclass",
    "MATERIALIZED VIEW": "to_regclass",
    "FOREIGN TABLE": "to_regclass",
    "COLLATION": "to_regcollation",
}
NAMED_KINDS = frozenset(_LOOKUP)
"""The kinds of entries whose exact names ``object_names`` reads."""


def quote_ident(name: str) -> str:
    """``name`` as SQL writes it: bare when pg_dump would write it bare, else in double quotes."""
    if _PLAIN_IDENT.fullmatch(name):
        return name
    return '"' + name.replace('"', '""') + '"'


def unquote(ident: str) -> str:
    if ident.startswith('"') and ident.endswith('"') and len(ident) >= 2:
        return ident[1:-1].replace('""', '"')
    return ident


@dataclass(frozen=True)
class ObjectName:
    """An object of the archive by its exact name: ``schema`` is None for a schema itself;
    ``arguments`` is a function's ``(integer, s1.mood)``."""

    kind: str
    schema: str | None
    name: str
    arguments: str = ""

    def __str__(self) -> str:
        if self.schema is None:
            return quote_ident(self.name)
        return f"{quote_ident(self.schema)}.{quote_ident(self.name)}{self.arguments}"


def object_names(script: str) -> dict[int, ObjectName]:
    """The exact names of the objects (``NAMED_KINDS``) in ``pg_restore --verbose --file -``
    output, by the id of their entry. A function whose argument types cannot be read is left
    out (it is then never taken for present)."""
    names: dict[int, ObjectName] = {}
    marks = list(_TOC_COMMENT.finditer(script))
    for index, mark in enumerate(marks):
        end = marks[index + 1].start() if index + 1 < len(marks) else len(script)
        dump_id = int(mark.group(1))
        schema = _CREATE_SCHEMA.search(script, mark.end(), end)
        create = _CREATE.search(script, mark.end(), end)
        if create and (schema is None or create.start() < schema.start()):
            kind, name = create[1], unquote(create[3])
            arguments = ""
            if kind in _ROUTINES:
                line = _NAME_LINE.search(script, mark.end(), end)
                tag = line[1] if line else ""
                if not tag.startswith(name + "(") or not tag.endswith(")"):
                    continue
                arguments = tag[len(name) :]
            names[dump_id] = ObjectName(kind, unquote(create[2]), name, arguments)
        elif schema:
            names[dump_id] = ObjectName("SCHEMA", None, unquote(schema[1]))
    return names


def present(conn: psycopg.Connection, names: dict[int, ObjectName]) -> set[int]:
    """The ids of the objects ``names`` the database of ``conn`` (autocommit) has. A lookup
    that fails (a function whose argument types the database lacks) is an object it lacks."""
    found: set[int] = set()
    for dump_id, name in names.items():
        lookup = _LOOKUP.get(name.kind)
        if lookup is None:
            continue
        try:
            row = conn.execute(f"SELECT {lookup}(%s) IS NOT NULL", (str(name),)).fetchone()
        except psycopg.Error:
            continue
        if row and row[0]:
            found.add(dump_id)
    return found
