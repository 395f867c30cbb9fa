"""The database's own properties read from pg_restore's script and rewritten for another name."""

from __future__ import annotations

from backup.postgres.properties import database_toc_lines, parse_script, split_statements

SCRIPT = '''--
-- PostgreSQL database dump
--

\\restrict abc
SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);
CREATE DATABASE "North ""wind""" WITH TEMPLATE = template0 ENCODING = 'UTF8';
ALTER DATABASE "North ""wind""" OWNER TO app_owner;
\\connect -reuse-previous=on "dbname='North \\"wind\\"'"
COMMENT ON DATABASE "North ""wind""" IS 'it''s; the
Northwind''; DROP DATABASE postgres; --';
ALTER DATABASE "North ""wind""" CONNECTION LIMIT = 40;
ALTER DATABASE "North ""wind""" SET search_path TO 'app', 'public';
ALTER ROLE "Odd Role" IN DATABASE "North ""wind""" SET work_mem TO '3MB';
REVOKE CONNECT,TEMPORARY ON DATABASE "North ""wind""" FROM PUBLIC;
SET SESSION AUTHORIZATION grantor;
GRANT CONNECT ON DATABASE "North ""wind""" TO app_reader;
RESET SESSION AUTHORIZATION;
DROP DATABASE postgres;
'''


def test_statements_keep_quoted_semicolons_and_newlines():
    statements = split_statements(SCRIPT)
    assert statements[0] == "SET statement_timeout = 0"
    comment = next(s for s in statements if s.startswith("COMMENT"))
    assert comment.endswith("DROP DATABASE postgres; --'")
    assert not any(s.startswith(("\\", "--")) for s in statements)


def test_the_name_is_replaced_by_a_quoted_identifier_and_the_rest_kept():
    props = parse_script(SCRIPT)
    applied = [s.as_string(None) for s in props.for_database('new "db"; x')]
    db = '"new ""db""; x"'
    assert applied == [
        f"ALTER DATABASE {db} OWNER TO app_owner",
        f"COMMENT ON DATABASE {db} IS 'it''s; the\nNorthwind''; DROP DATABASE postgres; --'",
        f"ALTER DATABASE {db} CONNECTION LIMIT = 40",
        f"ALTER DATABASE {db} SET search_path TO 'app', 'public'",
        f"ALTER ROLE \"Odd Role\" IN DATABASE {db} SET work_mem TO '3MB'",
        f"REVOKE CONNECT,TEMPORARY ON DATABASE {db} FROM PUBLIC",
        "SET SESSION AUTHORIZATION grantor",
        f"GRANT CONNECT ON DATABASE {db} TO app_reader",
        "RESET SESSION AUTHORIZATION",
    ]
    # A statement of another shape is never run: it is reported.
    assert props.skipped == ["DROP DATABASE postgres"]
    assert props.kinds() == ["comment", "grant", "owner", "role setting", "setting"]


def test_only_the_database_entries_of_the_table_of_contents_are_chosen():
    listing = """;
; Selected TOC Entries:
;
3339; 1262 16387 DATABASE - North wind app_owner
3340; 0 0 COMMENT - DATABASE "North wind" app_owner
3341; 0 0 ACL - DATABASE "North wind" app_owner
3342; 0 0 DATABASE PROPERTIES - North wind app_owner
3343; 0 0 SECURITY LABEL - DATABASE "North wind" app_owner
3344; 0 0 COMMENT - SCHEMA public pg_database_owner
214; 1259 16385 TABLE public DATABASE postgres
3338; 0 16385 TABLE DATA public t postgres
"""
    assert [line.split(";")[0] for line in database_toc_lines(listing)] == [
        "3339",
        "3340",
        "3341",
        "3342",
        "3343",
    ]
