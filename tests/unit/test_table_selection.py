"""Which entries of a table of contents restore a table (``backup.postgres.toc``): pure code,
checked on what pg_restore 15 printed for a real archive (``pg_restore --list --verbose``)."""

from __future__ import annotations

import pytest

from backup.errors import ConfigError
from backup.postgres import toc

# A table with a serial and an identity column, a foreign key to "parent", an index, a
# policy, a trigger, statistics, comments and grants; "child" has a foreign key to it and the
# view "vv" reads it.
LISTING = """\
3375; 0 0 ENCODING - ENCODING
3376; 0 0 STDSTRINGS - STDSTRINGS
3377; 0 0 SEARCHPATH - SEARCHPATH
3378; 1262 16384 DATABASE - d postgres
220; 1255 16420 FUNCTION public trg() postgres
217; 1259 16395 TABLE public My Table.x postgres
3379; 0 0 COMMENT public TABLE "My Table.x" postgres
;\tdepends on: 217
3380; 0 0 COMMENT public COLUMN "My Table.x".v postgres
;\tdepends on: 217
3381; 0 0 ACL public TABLE "My Table.x" postgres
;\tdepends on: 217
215; 1259 16393 SEQUENCE public My Table.x_id_seq postgres
;\tdepends on: 217
3382; 0 0 SEQUENCE OWNED BY public My Table.x_id_seq postgres
;\tdepends on: 215
3383; 0 0 ACL public SEQUENCE "My Table.x_id_seq" postgres
;\tdepends on: 215
216; 1259 16394 SEQUENCE public My Table.x_ident_seq postgres
;\tdepends on: 217
218; 1259 16412 TABLE public child postgres
214; 1259 16386 TABLE public parent postgres
219; 1259 16422 VIEW public vv postgres
;\tdepends on: 217 217 217 217
3211; 2604 16398 DEFAULT public My Table.x id postgres
;\tdepends on: 217 215 217
3371; 0 16395 TABLE DATA public My Table.x postgres
;\tdepends on: 217
3372; 0 16412 TABLE DATA public child postgres
;\tdepends on: 218
3368; 0 16386 TABLE DATA public parent postgres
;\tdepends on: 214
3384; 0 0 SEQUENCE SET public My Table.x_id_seq postgres
;\tdepends on: 215
3385; 0 0 SEQUENCE SET public My Table.x_ident_seq postgres
;\tdepends on: 216
3217; 2606 16404 CONSTRAINT public My Table.x My Table.x_pkey postgres
;\tdepends on: 217
3215; 2606 16392 CONSTRAINT public parent parent_pkey postgres
;\tdepends on: 214
3218; 1259 16410 INDEX public my_v postgres
;\tdepends on: 217
3219; 3381 16426 STATISTICS public st postgres
;\tdepends on: 217 217
3222; 2620 16421 TRIGGER public My Table.x t1 postgres
;\tdepends on: 220 217
3220; 2606 16405 FK CONSTRAINT public My Table.x My Table.x_pid_fkey postgres
;\tdepends on: 217 3215 214
3221; 2606 16415 FK CONSTRAINT public child child_mid_fkey postgres
;\tdepends on: 218 3217 217
3366; 0 16395 ROW SECURITY public My Table.x postgres
;\tdepends on: 217
3367; 3256 16411 POLICY public My Table.x p1 postgres
;\tdepends on: 217 217
"""

SCRIPT = """\
--
-- TOC entry 217 (class 1259 OID 16395)
-- Name: My Table.x; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public."My Table.x" (
    id integer NOT NULL
);

--
-- TOC entry 218 (class 1259 OID 16412)
--

CREATE UNLOGGED TABLE "Odd ""Schema"".x".child (
    id integer
);

--
-- TOC entry 214 (class 1259 OID 16386)
--

CREATE TABLE public.parent (
    id integer NOT NULL
);
"""

TABLES = {
    217: toc.TableName("public", "My Table.x"),
    218: toc.TableName("public", "child"),
    214: toc.TableName("public", "parent"),
}


def kinds(selection: toc.Selection) -> list[str]:
    return [f"{e.kind} {e.names}" for e in selection.entries]


def test_the_listing_is_read_with_its_dependencies():
    entries = {e.dump_id: e for e in toc.parse_listing(LISTING)}
    assert entries[3371].kind == "TABLE DATA" and entries[3371].depends_on == (217,)
    assert entries[3382].kind == "SEQUENCE OWNED BY"
    assert entries[3221].kind == "FK CONSTRAINT" and entries[3221].depends_on == (218, 3217, 217)
    assert entries[217].kind == "TABLE" and entries[217].names == "public My Table.x postgres"


def test_table_names_come_quoted_from_the_script():
    assert toc.table_names(SCRIPT) == {
        217: toc.TableName("public", "My Table.x"),
        218: toc.TableName('Odd "Schema".x', "child"),
        214: toc.TableName("public", "parent"),
    }
    assert str(toc.TableName('Odd "Schema".x', "child")) == '"Odd ""Schema"".x".child'


def test_a_table_comes_with_everything_it_owns_and_nothing_else():
    selection = toc.select(toc.parse_listing(LISTING), TABLES, [217])
    assert kinds(selection) == [
        "ENCODING - ENCODING",
        "STDSTRINGS - STDSTRINGS",
        "SEARCHPATH - SEARCHPATH",
        "TABLE public My Table.x postgres",
        'COMMENT public TABLE "My Table.x" postgres',
        'COMMENT public COLUMN "My Table.x".v postgres',
        'ACL public TABLE "My Table.x" postgres',
        "SEQUENCE public My Table.x_id_seq postgres",
        "SEQUENCE OWNED BY public My Table.x_id_seq postgres",
        'ACL public SEQUENCE "My Table.x_id_seq" postgres',
        "SEQUENCE public My Table.x_ident_seq postgres",
        "DEFAULT public My Table.x id postgres",
        "TABLE DATA public My Table.x postgres",
        "SEQUENCE SET public My Table.x_id_seq postgres",
        "SEQUENCE SET public My Table.x_ident_seq postgres",
        "CONSTRAINT public My Table.x My Table.x_pkey postgres",
        "INDEX public my_v postgres",
        "STATISTICS public st postgres",
        "TRIGGER public My Table.x t1 postgres",
        # Its own foreign key (to parent), not child's key pointing at it.
        "FK CONSTRAINT public My Table.x My Table.x_pid_fkey postgres",
        "ROW SECURITY public My Table.x postgres",
        "POLICY public My Table.x p1 postgres",
    ]
    assert [f"{e.kind} {e.names}" for e in selection.left_out] == [
        "VIEW public vv postgres",
        "FK CONSTRAINT public child child_mid_fkey postgres",
    ]
    assert (
        selection.use_list().splitlines()[3] == "217; 1259 16395 TABLE public My Table.x postgres"
    )


def test_two_tables_bring_the_key_between_them():
    selection = toc.select(toc.parse_listing(LISTING), TABLES, [217, 218])
    assert "FK CONSTRAINT public child child_mid_fkey postgres" in kinds(selection)
    assert "TABLE DATA public child postgres" in kinds(selection)
    assert "TABLE DATA public parent postgres" not in kinds(selection)
    assert [e.kind for e in selection.left_out] == ["VIEW"]


def test_a_schema_the_target_lacks_is_created():
    listing = LISTING + (
        "3400; 2615 16500 SCHEMA - Odd Schema postgres\n"
        '3401; 0 0 COMMENT - SCHEMA "Odd Schema" postgres\n'
        ";\tdepends on: 3400\n"
        "3402; 1259 16501 SEQUENCE Odd Schema other_seq postgres\n"
        ";\tdepends on: 3400\n"
    )
    selection = toc.select(toc.parse_listing(listing), TABLES, [218], ["Odd Schema"])
    assert "SCHEMA - Odd Schema postgres" in kinds(selection)
    assert 'COMMENT - SCHEMA "Odd Schema" postgres' in kinds(selection)
    assert "SEQUENCE Odd Schema other_seq postgres" not in kinds(selection)
    assert "SCHEMA - Odd Schema postgres" not in kinds(
        toc.select(toc.parse_listing(listing), TABLES, [218])
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("public.parent", "public.parent"),
        ("parent", "public.parent"),
        ("My Table.x", 'public."My Table.x"'),
        ('"My Table.x"', 'public."My Table.x"'),
        ('public."My Table.x"', 'public."My Table.x"'),
        ("public.My Table.x", 'public."My Table.x"'),
        ('"Odd ""Schema"".x".child', '"Odd ""Schema"".x".child'),
        # Not SQL syntax: the name as it is.
        ('Mixed "Case". Table', 'public."Mixed ""Case"". Table"'),
    ],
)
def test_names_as_operators_write_them(value, expected):
    tables = {
        **TABLES,
        218: toc.TableName('Odd "Schema".x', "child"),
        219: toc.TableName("public", 'Mixed "Case". Table'),
    }
    [found] = toc.resolve([value], tables).values()
    assert str(found) == expected


def test_an_unknown_name_is_refused_with_the_close_ones():
    with pytest.raises(ConfigError) as caught:
        toc.resolve(["public.parnet", "public.parent", "Parent"], TABLES)
    assert caught.value.exit_code == 2
    assert "'public.parnet'" in caught.value.message and "'Parent'" in caught.value.message
    assert "public.parent" in caught.value.hint and "--list-tables" in caught.value.hint


def test_a_name_in_two_schemas_needs_its_schema():
    tables = {**TABLES, 300: toc.TableName("archive", "parent")}
    with pytest.raises(ConfigError, match=r"ambiguous: archive\.parent, public\.parent"):
        toc.resolve(["parent"], tables)
    assert list(toc.resolve(["archive.parent"], tables)) == [300]


@pytest.mark.parametrize("value", ["", "  ", '"a"."b"."c"', '"a', '."a"', '"a".'])
def test_malformed_names_are_usage_errors(value):
    with pytest.raises(ConfigError):
        toc.resolve([value], TABLES)


def test_identifiers_are_quoted_as_sql_does():
    assert toc.quote_ident("orders") == "orders"
    assert toc.quote_ident("Orders") == '"Orders"'
    assert toc.quote_ident('a "b" c') == '"a ""b"" c"'


def test_a_partition_is_attached_only_when_both_tables_come():
    listing = (
        "10; 1259 1 TABLE shop orders postgres\n"
        "11; 1259 2 TABLE shop orders_2024 postgres\n"
        "12; 0 0 TABLE ATTACH shop orders_2024 postgres\n"
        ";\tdepends on: 10 11\n"
        "13; 0 2 TABLE DATA shop orders_2024 postgres\n"
        ";\tdepends on: 11\n"
    )
    tables = {10: toc.TableName("shop", "orders"), 11: toc.TableName("shop", "orders_2024")}
    entries = toc.parse_listing(listing)
    assert [e.kind for e in toc.select(entries, tables, [10]).entries] == ["TABLE"]
    assert [e.kind for e in toc.select(entries, tables, [10, 11]).entries] == [
        "TABLE",
        "TABLE",
        "TABLE ATTACH",
        "TABLE DATA",
    ]


def test_a_schema_brings_every_table_of_it():
    tables = {**TABLES, 300: toc.TableName("archive", "parent")}
    assert sorted(toc.resolve(["archive.parent"], tables, ["public"])) == [214, 217, 218, 300]
    with pytest.raises(ConfigError, match="--schema 'publik': the backup holds no table") as caught:
        toc.resolve([], tables, ["publik"])
    assert "public" in caught.value.hint


# What pg_restore 15 printed for a table using an enum, a domain, two functions (a default and
# a check), a sequence it does not own (a default's nextval) and a foreign key to "parent".
NEEDS_LISTING = """\
3382; 0 0 ENCODING - ENCODING
6; 2615 16384 SCHEMA - s1 postgres
845; 1247 16386 TYPE s1 mood postgres
;\tdepends on: 6
848; 1247 16392 DOMAIN s1 pos postgres
;\tdepends on: 6
222; 1255 16395 FUNCTION s1 chk(integer) postgres
;\tdepends on: 6
221; 1255 16394 FUNCTION s1 def() postgres
;\tdepends on: 6
216; 1259 16397 TABLE public parent postgres
215; 1259 16396 SEQUENCE public shared_seq postgres
218; 1259 16403 TABLE s1 T x postgres
;\tdepends on: 221 215 222 6 845 848
3387; 0 0 COMMENT s1 TABLE "T x" postgres
;\tdepends on: 218
3392; 0 0 COMMENT s1 TYPE mood postgres
;\tdepends on: 845
217; 1259 16402 SEQUENCE s1 T x_id_seq postgres
;\tdepends on: 218 6
3374; 0 16397 TABLE DATA public parent postgres
;\tdepends on: 216
3376; 0 16403 TABLE DATA s1 T x postgres
;\tdepends on: 218
3390; 0 0 SEQUENCE SET public shared_seq postgres
;\tdepends on: 215
3391; 0 0 SEQUENCE SET s1 T x_id_seq postgres
;\tdepends on: 217
3225; 2606 16401 CONSTRAINT public parent parent_pkey postgres
;\tdepends on: 216
3228; 2606 16412 FK CONSTRAINT s1 T x T x_pid_fkey postgres
;\tdepends on: 218 216 3225
"""
NEEDS_TABLES = {218: toc.TableName("s1", "T x"), 216: toc.TableName("public", "parent")}


def test_what_a_table_uses_is_found_through_the_dependencies():
    entries = toc.parse_listing(NEEDS_LISTING)
    own = toc.select(entries, NEEDS_TABLES, [218])
    assert toc.dependencies(entries, own) == [6, 845, 848, 222, 221, 215]


def test_what_the_target_lacks_comes_with_its_comment_and_value():
    entries = toc.parse_listing(NEEDS_LISTING)
    chosen = toc.select(entries, NEEDS_TABLES, [218], create=[845, 215], missing_tables=[216])
    ids = [e.dump_id for e in chosen.entries]
    # The type with its comment, the sequence with its value; not the parent's rows.
    assert {845, 3392, 215, 3390} <= set(ids) and 3374 not in ids and 6 not in ids
    assert [e.dump_id for e in chosen.created] == [845, 215]
    # The foreign key to a table neither chosen nor in the target is left out, on its own list.
    assert 3228 not in ids and [e.dump_id for e in chosen.dangling] == [3228]
    kept = toc.select(entries, NEEDS_TABLES, [218])
    assert 3228 in [e.dump_id for e in kept.entries] and not kept.dangling


def test_exact_names_of_objects_from_the_script():
    script = '''\
--
-- TOC entry 6 (class 2615 OID 16384)
-- Name: Sché ma; Type: SCHEMA; Schema: -; Owner: postgres
--

CREATE SCHEMA "Sché ma";

--
-- TOC entry 222 (class 1255 OID 16395)
-- Name: chk(integer, "Sché ma".mood); Type: FUNCTION; Schema: Sché ma; Owner: postgres
--

CREATE FUNCTION "Sché ma".chk(a integer, b "Sché ma".mood) RETURNS boolean
    LANGUAGE sql

--
-- TOC entry 845 (class 1247 OID 16386)
-- Name: mood; Type: TYPE; Schema: Sché ma; Owner: postgres
--

CREATE TYPE "Sché ma".mood AS ENUM (

--
-- TOC entry 218 (class 1259 OID 16403)
-- Name: T. "x"; Type: TABLE; Schema: Sché ma; Owner: postgres
--

CREATE TABLE "Sché ma"."T. ""x""" (
'''
    from backup.postgres import toc_names

    names = toc_names.object_names(script)
    assert {i: str(n) for i, n in names.items()} == {
        6: '"Sché ma"',
        222: '"Sché ma".chk(integer, "Sché ma".mood)',
        845: '"Sché ma".mood',
        218: '"Sché ma"."T. ""x"""',
    }
    assert names[218].kind == "TABLE" and names[218].name == 'T. "x"'
