"""What the target of ``restore --table`` already holds: the chosen tables (refused, or with
``--in-place --clean`` replaced), what they use (a schema, a type, a function, a sequence) and
the tables their foreign keys point to. Read before the confirmation; nothing is changed here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from backup.config import Config
from backup.errors import ConfigError
from backup.postgres import server as pg_server
from backup.postgres import toc, toc_names

# Objects outside a table that would stop its DROP (or that a DROP ... CASCADE would take
# with it): another table's foreign key, a view's rule, a default or function using its
# owned sequence or its row type. The table's own constraints, rules, triggers, policies,
# statistics and defaults are dropped and restored with it.
_DEPENDENTS = """
WITH t AS (SELECT c.oid, c.reltype FROM pg_class c WHERE c.oid = %(table)s::regclass),
owned AS (
  SELECT d.objid AS oid FROM pg_depend d, t
  WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
    AND d.refobjid = t.oid AND d.deptype IN ('a', 'i')
    AND (SELECT relkind FROM pg_class WHERE oid = d.objid) = 'S'
)
SELECT DISTINCT pg_describe_object(d.classid, d.objid, d.objsubid) FROM pg_depend d, t
WHERE d.deptype = 'n'
  AND (d.refobjid IN (t.oid, t.reltype) OR d.refobjid IN (SELECT oid FROM owned))
  AND d.refclassid IN ('pg_class'::regclass, 'pg_type'::regclass)
  AND NOT (d.classid = 'pg_class'::regclass
           AND (d.objid = t.oid OR d.objid IN (SELECT oid FROM owned)))
  AND NOT (d.classid = 'pg_constraint'::regclass
           AND EXISTS (SELECT 1 FROM pg_constraint k WHERE k.oid = d.objid AND k.conrelid = t.oid))
  AND NOT (d.classid = 'pg_rewrite'::regclass
           AND EXISTS (SELECT 1 FROM pg_rewrite r WHERE r.oid = d.objid AND r.ev_class = t.oid))
  AND NOT (d.classid = 'pg_trigger'::regclass
           AND EXISTS (SELECT 1 FROM pg_trigger g WHERE g.oid = d.objid AND g.tgrelid = t.oid))
  AND NOT (d.classid = 'pg_policy'::regclass
           AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.oid = d.objid AND p.polrelid = t.oid))
  AND NOT (d.classid = 'pg_attrdef'::regclass
           AND EXISTS (SELECT 1 FROM pg_attrdef a WHERE a.oid = d.objid AND a.adrelid = t.oid))
  AND NOT (d.classid = 'pg_statistic_ext'::regclass
           AND EXISTS (SELECT 1 FROM pg_statistic_ext s
                       WHERE s.oid = d.objid AND s.stxrelid = t.oid))
ORDER BY 1
"""


@dataclass(frozen=True)
class Target:
    database: str
    admin_db: str
    exists: bool
    server: pg_server.ServerInfo
    in_place: bool = False
    clean: bool = False


@dataclass
class TargetState:
    """What the target holds of what a table restore needs."""

    replaced: list[toc.TableName] = field(default_factory=list)
    """Chosen tables the target has: dropped and restored (``--in-place --clean`` only)."""
    missing: set[int] = field(default_factory=set)
    """Entries of what the chosen tables use (``toc.dependencies``) the target lacks."""
    missing_tables: set[int] = field(default_factory=set)
    """Tables their foreign keys point to, neither chosen nor in the target."""


def referenced_tables(
    selection: toc.Selection, tables: dict[int, toc.TableName], chosen: Iterable[int]
) -> set[int]:
    """The TABLE entries the foreign keys of ``selection`` point to, but the chosen ones."""
    ids = set(chosen)
    return {
        d
        for e in selection.entries
        if e.kind == "FK CONSTRAINT"
        for d in e.depends_on
        if d in tables and d not in ids
    }


def inspect(
    config: Config,
    target: Target,
    chosen: dict[int, toc.TableName],
    names: dict[int, toc_names.ObjectName],
    needed: Iterable[int],
    referenced: Iterable[int],
) -> TargetState:
    """What ``target`` holds of the ``chosen`` tables, of what they use (``needed`` entries)
    and of the tables their foreign keys point to (``referenced``, the ids of their TABLE
    entries). Exit 2 when a chosen table exists and may not be replaced, or when something
    outside it depends on it (a view, another table's foreign key), which its DROP would break."""
    needed, referenced = list(needed), list(referenced)
    if not target.exists:
        # A new database has none of them (but the public schema every database has).
        public = toc_names.ObjectName("SCHEMA", None, "public")
        everywhere = {i for i in needed if names.get(i) == public}
        return TargetState([], set(needed) - everywhere, set(referenced))
    with pg_server.connect(config.postgres, target.database) as conn:
        tables = {i: toc_names.ObjectName("TABLE", t.schema, t.name) for i, t in chosen.items()}
        taken = [chosen[i] for i in toc_names.present(conn, tables)]
        have = toc_names.present(conn, {i: names[i] for i in needed if i in names})
        have_tables = toc_names.present(conn, {i: names[i] for i in referenced if i in names})
        dependents: dict[str, list[str]] = {}
        if taken and target.clean:
            for table in taken:
                rows = conn.execute(_DEPENDENTS, {"table": str(table)}).fetchall()
                if rows:
                    dependents[str(table)] = [r[0] for r in rows]
    taken.sort(key=str)
    if taken and not target.clean:
        listed = ", ".join(str(t) for t in taken)
        hint = (
            "restore it into another database (--target-db NEW, created fresh) and copy "
            "what you need, or move the table aside first, with its indexes, constraints and "
            f"owned sequences (CREATE SCHEMA attic; ALTER TABLE {taken[0]} SET SCHEMA attic), "
            "and run the restore again"
        )
        if target.in_place:
            hint = "add --clean to replace it (dropped, then restored, in one transaction); " + hint
        raise ConfigError(
            f"{listed} already exist{'s' if len(taken) == 1 else ''} in "
            f"{target.database}: --table never replaces a table without --in-place --clean",
            hint=hint,
        )
    if dependents:
        raise ConfigError(
            [
                f"{table} cannot be replaced: {', '.join(objs)} depend"
                f"{'s' if len(objs) == 1 else ''} on it"
                for table, objs in dependents.items()
            ],
            hint="a DROP TABLE would have to take them too, and --clean never drops more than "
            "the tables named: drop or recreate them yourself, or restore into another "
            "database (--target-db NEW) and copy the rows back",
        )
    return TargetState(taken, set(needed) - have, set(referenced) - have_tables)
