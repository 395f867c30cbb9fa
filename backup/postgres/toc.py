"""Which entries of an archive's table of contents restore one table: pure code, no I/O.

``pg_restore --list --verbose`` prints one line per entry (``<id>; <tableoid> <oid> <desc>
<schema> <tag> <owner>``, names unquoted, so a name with spaces cannot be split from it) and,
under it, the ids it depends on. The tables' exact names come from the SQL pg_restore writes for
their TABLE entries (``CREATE TABLE "Odd Schema"."Mixed Case Table" (``, quoted as SQL
quotes them), matched to their entries by the ``-- TOC entry <id>`` comment of ``--verbose``.

A table's own entries are found through the dependencies, from its TABLE entry outwards: its
data, indexes, constraints, foreign keys it declares, triggers, policies, row-level security,
column defaults, comments, grants, security labels, extended statistics and the sequences it
owns (with their values, comments and grants). What only depends on it but belongs to another
object (a foreign key declared by another table, a view) is not restored and is named instead.
What the table uses from outside (``dependencies``: its schema, types, domains, the functions of
its defaults, checks and triggers, a sequence a default draws from) is found through the same
graph, for the caller to ask the target which it lacks; those are restored with it
(``select(create=...)``). A foreign key to a table neither chosen nor in the target is left out
(``Selection.dangling``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from backup.errors import ConfigError
from backup.postgres.toc_names import object_names, quote_ident
from backup.postgres.toc_names import unquote as _unquote

# Entries a table owns, restored with it when they depend on it (directly or through one
# another: a sequence's value depends on the sequence, a constraint's comment on the constraint).
OWNED_KINDS = frozenset(
    {
        "TABLE DATA",
        "INDEX",
        "CONSTRAINT",
        "CHECK CONSTRAINT",
        "FK CONSTRAINT",
        "TRIGGER",
        "POLICY",
        "ROW SECURITY",
        "RULE",
        "DEFAULT",
        "COMMENT",
        "ACL",
        "SECURITY LABEL",
        "STATISTICS",
        "STATISTICS DATA",
        "SEQUENCE",
        "SEQUENCE OWNED BY",
        "SEQUENCE SET",
        "TABLE ATTACH",
        "INDEX ATTACH",
    }
)
# Kinds whose tag is "<table> <name>": the table named first is the one they belong to.
_TABLE_TAGGED = frozenset({"CONSTRAINT", "CHECK CONSTRAINT", "FK CONSTRAINT", "TRIGGER", "POLICY"})
# Kinds that join two objects: restored only when both are.
_JOINING = frozenset({"TABLE ATTACH", "INDEX ATTACH"})
# The archive's settings (encoding, standard_conforming_strings, search_path): always kept.
_SETTINGS = frozenset({"ENCODING", "STDSTRINGS", "SEARCHPATH"})
_SCHEMA_PROPERTIES = frozenset({"COMMENT", "ACL", "SECURITY LABEL"})
_RELATIONS = frozenset({"TABLE", "VIEW", "MATERIALIZED VIEW", "FOREIGN TABLE"})
# Every multi-word kind pg_dump writes, longest first, so "TABLE DATA" is never read as "TABLE".
_MULTI_WORD = sorted(
    {
        *(k for k in OWNED_KINDS if " " in k),
        "MATERIALIZED VIEW",
        "MATERIALIZED VIEW DATA",
        "FOREIGN TABLE",
        "DEFAULT ACL",
        "LARGE OBJECT",
        "LARGE OBJECTS",
        "EVENT TRIGGER",
        "PUBLICATION TABLE",
        "PUBLICATION TABLES IN SCHEMA",
        "SUBSCRIPTION TABLE",
        "USER MAPPING",
        "FOREIGN DATA WRAPPER",
        "SHELL TYPE",
        "PROCEDURAL LANGUAGE",
        "OPERATOR CLASS",
        "OPERATOR FAMILY",
        "ACCESS METHOD",
        "TEXT SEARCH CONFIGURATION",
        "TEXT SEARCH DICTIONARY",
        "TEXT SEARCH PARSER",
        "TEXT SEARCH TEMPLATE",
        "DATABASE PROPERTIES",
        "BLOB METADATA",
    },
    key=len,
    reverse=True,
)
_ENTRY = re.compile(r"^(\d+); (\d+) (\d+) (.*)$")
_DEPENDS = re.compile(r"^;\s*depends on:((?: \d+)*)\s*$")
# What a chosen table may use that the target may lack: created with it when it does.
DEPENDENCY_KINDS = frozenset(
    {"SCHEMA", "TYPE", "DOMAIN", "FUNCTION", "PROCEDURE", "AGGREGATE", "SEQUENCE", "COLLATION"}
)
# What comes with an object created because a chosen table needs it (a sequence's value).
_DEPENDENCY_PROPERTIES = frozenset({"COMMENT", "ACL", "SECURITY LABEL", "SEQUENCE SET"})


@dataclass(frozen=True)
class TocEntry:
    """One line of ``pg_restore --list --verbose``."""

    dump_id: int
    kind: str
    """pg_dump's description: ``TABLE``, ``TABLE DATA``, ``FK CONSTRAINT``, ..."""
    names: str
    """``<schema> <tag> <owner>`` as pg_restore prints them: unquoted, for display and for
    the prefix tests only."""
    line: str
    depends_on: tuple[int, ...] = ()


@dataclass(frozen=True)
class TableName:
    schema: str
    name: str

    def __str__(self) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(self.name)}"


@dataclass
class Selection:
    """What ``select`` chose: the list for ``pg_restore --use-list`` and what it left out."""

    entries: list[TocEntry] = field(default_factory=list)
    left_out: list[TocEntry] = field(default_factory=list)
    """Entries that depend on a chosen table but belong to another object (a foreign key of
    another table, a view): not restored."""
    dangling: list[TocEntry] = field(default_factory=list)
    """The chosen tables' foreign keys to tables neither chosen nor in the target: left out."""
    created: list[TocEntry] = field(default_factory=list)
    """What the chosen tables use that the target lacks, created with them (a schema, a type,
    a function)."""

    def use_list(self) -> str:
        return "".join(entry.line + "\n" for entry in self.entries)


def _kind_and_names(text: str) -> tuple[str, str]:
    for kind in _MULTI_WORD:
        if text.startswith(kind + " "):
            return kind, text[len(kind) + 1 :]
    kind, _, names = text.partition(" ")
    return kind, names


def parse_listing(listing: str) -> list[TocEntry]:
    """The entries of ``pg_restore --list --verbose`` output, in the archive's order."""
    entries: list[TocEntry] = []
    for line in listing.splitlines():
        depends = _DEPENDS.match(line)
        if depends and entries:
            last = entries[-1]
            ids = tuple(int(i) for i in depends.group(1).split())
            entries[-1] = TocEntry(last.dump_id, last.kind, last.names, last.line, ids)
            continue
        match = _ENTRY.match(line)
        if match:
            kind, names = _kind_and_names(match.group(4))
            entries.append(TocEntry(int(match.group(1)), kind, names, line))
    return entries


def table_names(script: str) -> dict[int, TableName]:
    """The exact names of the tables in ``pg_restore --verbose --file -`` output of TABLE
    entries, by the id of their entry."""
    return {
        dump_id: TableName(name.schema or "", name.name)
        for dump_id, name in object_names(script).items()
        if name.kind == "TABLE"
    }


_QUOTED_NAME = re.compile(r'("(?:[^"]|"")+"|[^."]+)(?:\.("(?:[^"]|"")+"|[^."]+))?')


def parse_table_argument(value: str) -> tuple[str | None, str] | list[tuple[str, str]]:
    """``--table`` as given: ``schema.table`` or ``table``, exact, never case-folded. Written
    the SQL way with a double-quoted part (``"Odd Schema"."Mixed Case Table"``), it is read
    the SQL way; otherwise the value is the names as they are, and one with dots is every way
    of reading it, for the archive to decide (a list; ``""`` as the schema: any schema, the
    whole value being the table's name). ``ConfigError`` for an empty value."""
    text = value.strip()
    if not text:
        raise ConfigError(
            f"--table {value!r}: a table name cannot be empty or blank",
            hint="give SCHEMA.TABLE (see restore --list-tables)",
        )
    quoted = _QUOTED_NAME.fullmatch(text)
    if quoted and '"' in text:
        first, second = _unquote(quoted[1]), quoted[2]
        return (None, first) if second is None else (first, _unquote(second))
    if "." not in text:
        return None, text
    pieces = text.split(".")
    splits = [(".".join(pieces[:i]), ".".join(pieces[i:])) for i in range(1, len(pieces))]
    return [*splits, ("", text)]


def resolve(
    values: Iterable[str], tables: dict[int, TableName], schemas: Iterable[str] = ()
) -> dict[int, TableName]:
    """The archive's tables that ``--table`` values name, and every table of each of the
    ``schemas`` (``--schema``, exact names), by entry id. A name without a schema is the one
    table of that name; every name missing from the archive, or ambiguous, and every schema
    without a table, is one ``ConfigError`` naming them all, with the closest names the
    archive holds."""
    chosen: dict[int, TableName] = {}
    problems: list[str] = []
    hints: list[str] = []
    for schema in schemas:
        found_in = {i: t for i, t in tables.items() if t.schema == schema}
        if found_in:
            chosen.update(found_in)
            continue
        problems.append(f"--schema {schema!r}: the backup holds no table in that schema")
        close = difflib.get_close_matches(schema, sorted({t.schema for t in tables.values()}))
        if close:
            hints.append(f"did you mean {', '.join(quote_ident(c) for c in close)}?")
    by_name = {(t.schema, t.name): dump_id for dump_id, t in tables.items()}
    for value in values:
        parsed = parse_table_argument(value)
        candidates = parsed if isinstance(parsed, list) else [parsed]
        found: list[int] = []
        for schema, name in candidates:
            if not schema:
                found += [i for i, t in tables.items() if t.name == name]
            elif (schema, name) in by_name:
                found.append(by_name[(schema, name)])
        found = list(dict.fromkeys(found))
        if len(found) == 1:
            chosen[found[0]] = tables[found[0]]
            continue
        if found:
            problems.append(
                f"--table {value!r} is ambiguous: "
                + ", ".join(sorted(str(tables[i]) for i in found))
            )
            hints.append("name the schema too")
            continue
        problems.append(f"--table {value!r}: the backup holds no such table")
        close = _close_names(value, tables.values())
        if close:
            hints.append(f"did you mean {', '.join(close)}?")
    if problems:
        raise ConfigError(
            problems,
            hint="; ".join(
                [*hints, "contents (or restore --list-tables) shows every table of the backup"]
            ),
        )
    return chosen


def _close_names(value: str, tables: Iterable[TableName]) -> list[str]:
    wanted = value.replace('"', "").lower()
    by_key: dict[str, list[str]] = {}
    for table in tables:
        by_key.setdefault(f"{table.schema}.{table.name}".lower(), []).append(str(table))
        by_key.setdefault(table.name.lower(), []).append(str(table))
    found: list[str] = []
    for key in difflib.get_close_matches(wanted, list(by_key), n=5, cutoff=0.6):
        found += [name for name in by_key[key] if name not in found]
    return found[:5]


def select(
    entries: list[TocEntry],
    tables: dict[int, TableName],
    chosen: Iterable[int],
    create_schemas: Iterable[str] = (),
    create: Iterable[int] = (),
    missing_tables: Iterable[int] = (),
) -> Selection:
    """The entries that restore the ``chosen`` tables (ids of TABLE entries) and what they
    own, in the archive's order, with the archive's settings; the SCHEMA entries of
    ``create_schemas`` and the entries ``create`` (what they depend on that the target lacks:
    see ``dependencies``), each with its comments, grants, security labels and, for a
    sequence, its value. A foreign key of a chosen table to a table of ``missing_tables``
    (not chosen, and not in the target) is left out (``Selection.dangling``). See the
    module's docstring."""
    chosen_ids = set(chosen)
    missing = set(missing_tables) - chosen_ids
    by_id = {e.dump_id: e for e in entries}
    selected = set(chosen_ids)
    left_out: set[int] = set()
    dangling: set[int] = set()
    changed = True
    while changed:
        changed = False
        for entry in entries:
            if entry.dump_id in selected or not set(entry.depends_on) & selected:
                continue
            belongs = _belongs(entry, by_id, tables, selected, chosen_ids)
            if belongs and entry.kind == "FK CONSTRAINT" and set(entry.depends_on) & missing:
                dangling.add(entry.dump_id)
            elif belongs:
                selected.add(entry.dump_id)
                left_out.discard(entry.dump_id)
                changed = True
            else:
                left_out.add(entry.dump_id)
    schemas = set(create_schemas)
    added = set(create) | {
        e.dump_id
        for e in entries
        if e.kind == "SCHEMA" and any(e.names.startswith(f"- {s} ") for s in schemas)
    }
    for entry in entries:
        # An object created comes with its own comment, grants, labels and value (not with
        # the other objects that depend on it: a schema's tables, a sequence's other users).
        of_added = (
            entry.kind in _DEPENDENCY_PROPERTIES
            and bool(entry.depends_on)
            and set(entry.depends_on) <= added
        )
        if entry.kind in _SETTINGS or entry.dump_id in added or of_added:
            selected.add(entry.dump_id)
    return Selection(
        [e for e in entries if e.dump_id in selected],
        [e for e in entries if e.dump_id in left_out - selected],
        [e for e in entries if e.dump_id in dangling],
        [e for e in entries if e.dump_id in added],
    )


def dependencies(entries: list[TocEntry], selection: Selection) -> list[int]:
    """What the entries of ``selection`` use, directly or through one another, among the
    objects a target may lack (``DEPENDENCY_KINDS``: their schema, the types and domains of
    their columns, the functions their defaults, checks and triggers call, a sequence a
    default takes values from), from the archive's dependency graph; in the archive's order."""
    by_id = {e.dump_id: e for e in entries}
    chosen = {e.dump_id for e in selection.entries}
    found: set[int] = set()
    todo = [d for e in selection.entries for d in e.depends_on]
    while todo:
        dump_id = todo.pop()
        entry = by_id.get(dump_id)
        if entry is None or dump_id in found or dump_id in chosen:
            continue
        if entry.kind in DEPENDENCY_KINDS:
            found.add(dump_id)
            todo += entry.depends_on
    return [e.dump_id for e in entries if e.dump_id in found]


def _belongs(
    entry: TocEntry,
    by_id: dict[int, TocEntry],
    tables: dict[int, TableName],
    selected: set[int],
    chosen: set[int],
) -> bool:
    """Whether ``entry``, which depends on something selected, is the chosen tables' own."""
    if entry.kind not in OWNED_KINDS:
        return False
    deps = [d for d in entry.depends_on if d in by_id]
    if entry.kind in _JOINING:
        return all(d in selected for d in deps)
    if entry.kind in _TABLE_TAGGED:
        # The table it is declared on is the one whose name starts its tag. A foreign key
        # depends on both tables; another table's key pointing here is that table's own.
        owners = [
            d
            for d in deps
            if d in tables and entry.names.startswith(f"{tables[d].schema} {tables[d].name} ")
        ]
        return bool(owners) and all(d in chosen for d in owners)
    # Anything else is the chosen tables' own when every relation it depends on is chosen
    # (an index, a default, a comment; never a view's rule, which depends on the view).
    return all(d in selected for d in deps if by_id[d].kind in _RELATIONS)
