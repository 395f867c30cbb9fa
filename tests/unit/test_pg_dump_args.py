"""BACKUP_PG_DUMP_ARGS read as pg_dump's getopt_long reads it; BACKUP_EXCLUDE_TABLE_DATA and
BACKUP_EXCLUDE_DATABASES; the archive's table of contents read by OID."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backup.config import load
from backup.config.dump_options import (
    OPTIONS,
    REFUSED,
    SHORT_OPTIONS,
    ArgsProblem,
    check_pg_dump_args,
    split_pg_dump_args,
)
from backup.errors import ConfigError, IntegrityError
from backup.manifest import Manifest
from backup.postgres.pg_restore import toc_tables
from tests.fixtures.examples import examples


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("-T public.big --no-owner", ("-T", "public.big", "--no-owner")),
        ("--exclude-table-data='audit.*' -x", ("--exclude-table-data=audit.*", "-x")),
        ("-tfoo", ("-tfoo",)),  # -t with the value "foo": no -f in it
        ("-t -f", ("-t", "-f")),  # the table pattern "-f"
        ("--table --file", ("--table", "--file")),
        ("-xO", ("-xO",)),
        ("--no-ow", ("--no-ow",)),  # only --no-owner starts so
        ('-T "my table"', ("-T", "my table")),
        ("-v --strict-names -N tmp", ("-v", "--strict-names", "-N", "tmp")),
    ],
)
def test_accepted(text, words):
    assert split_pg_dump_args(text) == words


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("-f out", "-f"),
        ("-fout", "-f"),
        ("-F c", "-F"),
        ("-Fp", "-F"),
        ("-xFp", "-F"),
        ("-Z0", "-Z"),
        ("-j2", "-j"),
        ("--file=x", "--file"),
        ("--fi=x", "--fi"),
        ("--format plain", "--format"),
        ("--form=p", "--form"),
        ("--f=p", "--f"),
        ("--comp=9", "--comp"),
        ("--jobs=2", "--jobs"),
        ("-h x", "-h"),
        ("-p 1", "-p"),
        ("-U u", "-U"),
        ("-d db", "-d"),
        ("-w", "-w"),
        ("-W", "-W"),
        ("--host=x", "--host"),
        ("--dbname=x", "--dbname"),
        ("--role=x", "--role"),
        ("--ro=x", "--ro"),
        ("--snapshot=1", "--snapshot"),
        ("--lock-wait-timeout=1", "--lock-wait-timeout"),
        ("-s", "-s"),
        ("-a", "-a"),
        ("--schema-only", "--schema-only"),
        ("--sch=x", "--sch"),  # schema or schema-only: could be the refused one
        ("--section=data", "--section"),
        ("--no-data", "--no-data"),
        ("--no-sc", "--no-sc"),
        ("--statistics-only", "--statistics-only"),
        ("--binary-upgrade", "--binary-upgrade"),
        ("--help", "--help"),
        ("-V", "-V"),
        ("-?", "-?"),
        ("shop", "'shop'"),
        ("-T x shop", "'shop'"),
        ("-- -T", "'--'"),
        ("-", "'-'"),
        ("--bogus", "--bogus"),
        ("-X", "-X"),
        ("--no-owner=yes", "--no-owner"),
        ("-T", "'-T'"),
        ("--table", "'--table'"),
        ("--no-t", "ambiguous"),
        ("-T 'open", "split like a shell"),
        ("-T \\", "split like a shell"),
    ],
)
def test_refused(text, named):
    with pytest.raises(ArgsProblem) as raised:
        split_pg_dump_args(text)
    assert named in str(raised.value)


def test_a_refusal_exits_2_naming_the_variable_and_option():
    with pytest.raises(ConfigError) as raised:
        load({"PGDATABASE": "shop", "BACKUP_PG_DUMP_ARGS": "--no-owner --form=plain"})
    [problem] = raised.value.problems
    assert problem.startswith("BACKUP_PG_DUMP_ARGS has '--form'") and "--format" in problem
    assert raised.value.exit_code == 2


def test_control_characters_are_refused():
    with pytest.raises(ConfigError) as raised:
        load({"PGDATABASE": "shop", "BACKUP_PG_DUMP_ARGS": "-T 'a\nb'"})
    assert "BACKUP_PG_DUMP_ARGS" in raised.value.problems[0]


def test_what_gets_dumped_is_read():
    config = load(
        {
            "BACKUP_DATABASES": "all",
            "BACKUP_PG_DUMP_ARGS": "-T public.big",
            "BACKUP_EXCLUDE_TABLE_DATA": "public.logs, audit.*,public.logs",
            "BACKUP_EXCLUDE_DATABASES": "huge, scratch",
        }
    )
    assert config.dump.pg_dump_args == ("-T", "public.big")
    assert config.dump.exclude_table_data == ("public.logs", "audit.*")
    assert config.dump.exclude_databases == ("huge", "scratch")
    assert config.dump.pg_dump_options() == (
        "-T",
        "public.big",
        "--exclude-table-data=public.logs",
        "--exclude-table-data=audit.*",
    )
    assert load({"PGDATABASE": "shop"}).dump.pg_dump_options() == ()


@pytest.mark.parametrize(
    "environ",
    [
        {"BACKUP_DATABASES": "shop,huge", "BACKUP_EXCLUDE_DATABASES": "huge"},
        {"PGDATABASE": "huge", "BACKUP_EXCLUDE_DATABASES": "huge"},
    ],
)
def test_excluding_a_named_database_is_a_contradiction(environ):
    with pytest.raises(ConfigError) as raised:
        load(environ)
    assert "BACKUP_EXCLUDE_DATABASES" in raised.value.problems[0]
    assert "'huge'" in raised.value.problems[0]


def test_excluding_another_database_next_to_a_list_is_allowed():
    config = load({"BACKUP_DATABASES": "shop", "BACKUP_EXCLUDE_DATABASES": "huge"})
    assert config.postgres.databases == ("shop",)


def test_toc_is_read_by_oid():
    listing = (
        ";\n; Archive created at 2026-01-01\n;\n"
        "215; 1259 16390 TABLE Odd Schema Mixed Case Table postgres\n"
        "216; 1259 16400 TABLE public logs \n"
        "217; 1259 16410 TABLE shop orders postgres\n"
        "218; 1259 16420 TABLE shop orders_2025 postgres\n"
        "3400; 0 16420 TABLE ATTACH shop orders_2025 postgres\n"
        "3401; 0 16390 TABLE DATA Odd Schema Mixed Case Table postgres\n"
        "3402; 0 16420 TABLE DATA shop orders_2025 postgres\n"
        "3403; 0 16500 MATERIALIZED VIEW DATA public mv postgres\n"
        "3404; 0 16510 SEQUENCE SET public s postgres\n"
    )
    toc = toc_tables(listing)
    assert toc.tables == {16390, 16400, 16410, 16420}
    assert toc.with_data == {16390, 16420}


# ---------------------------------------------------------------- no spelling slips through

_ALLOWED_FLAGS = sorted(o for o, takes in OPTIONS.items() if not takes and o not in REFUSED)
_ALLOWED_VALUED = sorted(o for o, takes in OPTIONS.items() if takes and o not in REFUSED)
_SHORT_FLAGS = sorted(c for c, o in SHORT_OPTIONS.items() if not OPTIONS[o] and o not in REFUSED)
_SHORT_VALUED = sorted(c for c, o in SHORT_OPTIONS.items() if OPTIONS[o] and o not in REFUSED)
_SHORT_REFUSED = sorted(c for c, o in SHORT_OPTIONS.items() if o in REFUSED)
_VALUE = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=12)


def _unique_prefixes(name: str) -> list[str]:
    """The abbreviations getopt_long resolves to ``name`` alone."""
    return [
        name[:n]
        for n in range(1, len(name) + 1)
        if name[:n] == name or [o for o in OPTIONS if o.startswith(name[:n])] == [name]
    ]


@st.composite
def _safe(draw) -> list[str]:
    kind = draw(st.sampled_from(["flag", "valued", "short", "short_valued"]))
    if kind == "flag":
        return [
            "--" + draw(st.sampled_from(_unique_prefixes(draw(st.sampled_from(_ALLOWED_FLAGS)))))
        ]
    if kind == "valued":
        name = draw(st.sampled_from(_ALLOWED_VALUED))
        if draw(st.booleans()):
            return [f"--{name}={draw(_VALUE)}"]
        return [f"--{name}", draw(_VALUE)]  # the value may look like -f: it is a value
    flags = "".join(draw(st.lists(st.sampled_from(_SHORT_FLAGS), max_size=3)))
    if kind == "short":
        return ["-" + (flags or "x")]
    letter = draw(st.sampled_from(_SHORT_VALUED))
    if draw(st.booleans()):
        return [f"-{flags}{letter}{draw(_VALUE)}"]
    return [f"-{flags}{letter}", draw(_VALUE)]


@st.composite
def _dangerous(draw) -> list[str]:
    if draw(st.booleans()):
        name = draw(st.sampled_from(sorted(REFUSED)))
        prefix = name[: draw(st.integers(1, len(name)))]
        if prefix in OPTIONS and prefix not in REFUSED:  # --schema is itself, not --schema-only
            prefix = name
        return [f"--{prefix}" + (f"={draw(_VALUE)}" if draw(st.booleans()) else "")]
    flags = "".join(draw(st.lists(st.sampled_from(_SHORT_FLAGS), max_size=3)))
    letter = draw(st.sampled_from(_SHORT_REFUSED))
    return [f"-{flags}{letter}" + (draw(_VALUE) if draw(st.booleans()) else "")]


@settings(max_examples=examples(400), deadline=None)
@given(st.lists(st.tuples(st.booleans(), _safe(), _dangerous()), min_size=1, max_size=5))
def test_accepted_exactly_when_no_refused_option_is_spelled(pieces):
    """Words are built from allowed options (any unambiguous abbreviation, values that look
    like options) and refused ones (any abbreviation, clustered after flags, values glued):
    the list is accepted exactly when no refused spelling is in it."""
    words: list[str] = []
    dangerous = False
    for use_dangerous, safe, bad in pieces:
        words += bad if use_dangerous else safe
        dangerous = dangerous or use_dangerous
    try:
        check_pg_dump_args(words)
    except ArgsProblem:
        assert dangerous, words
    else:
        assert not dangerous, words


# ---------------------------------------------------------------- the manifest's new fields


def _manifest_json(**extra) -> dict:
    from tests.unit.test_manifest_trust import NOW, record

    data = json.loads(record("shop", NOW).to_json())
    data.update(extra)
    return data


def test_an_older_manifest_without_the_new_fields_is_read():
    data = _manifest_json()
    del data["pg_dump_args"], data["excluded"]
    read = Manifest.from_json(json.dumps(data).encode(), "k")
    assert read.pg_dump_args == [] and read.excluded == {}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"pg_dump_args": "-T x"}, "pg_dump_args is not a list of strings"),
        ({"pg_dump_args": [1]}, "pg_dump_args is not a list of strings"),
        ({"excluded": []}, "excluded is not an object"),
        ({"row_counts": {"without_data": "t"}}, "without_data is not a list of table names"),
    ],
)
def test_the_new_fields_are_validated(change, reason):
    with pytest.raises(IntegrityError, match=reason):
        Manifest.from_json(json.dumps(_manifest_json(**change)).encode(), "k")
