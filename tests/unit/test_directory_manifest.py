"""A directory-format manifest is believed only if every object it names is a content object
of its own database with the suffix of its encoding and every file name is one of pg_dump's;
older jobs refuse it (format 2) rather than read it as a custom-format one; orphan cleanup
never takes a content object or the address key."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from backup import manifest
from backup.config import CodecConfig, Secret
from backup.dirformat.address import encoding_tag
from backup.dump.directory import directory_manifest
from backup.dump.reuse import Target
from backup.errors import IntegrityError
from backup.manifest import Manifest
from backup.storage.base import ObjectInfo
from tests.unit.test_manifest_trust import record

NOW = datetime(2025, 11, 10, 3, 0, tzinfo=UTC)
A, B = "a" * 64, "b" * 64


def directory(database: str = "shop", **target_files: str) -> Manifest:
    files = target_files or {"toc.dat": A, "3456.dat": B}
    target = Target(storage=None)  # type: ignore[arg-type]
    target.files = [
        {
            "name": name,
            "key": manifest.content_key(database, address, ".zst"),
            "plain_bytes": 10,
            "size_bytes": 7,
            "sha256": "c" * 64,
            "new": True,
        }
        for name, address in files.items()
    ]
    return directory_manifest(record(database, NOW), target)


def test_a_directory_manifest_is_believed_and_round_trips() -> None:
    m = directory()
    assert m.problem() is None and m.format_version == 2
    assert m.object_key == "shop/_objects/aa/" + A + ".zst"
    assert m.size_bytes == 14 and m.new_bytes == 14
    again = Manifest.from_json(m.to_json())
    assert again == m and again.problem(m.key) is None


def test_a_custom_manifest_stays_format_1() -> None:
    assert json.loads(record("shop", NOW).to_json())["format_version"] == 1


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        (lambda f: {**f, "key": manifest.content_key("other", A, ".zst")}, "not a content object"),
        (lambda f: {**f, "key": "shop/_objects/aa/" + A + ".gz"}, "not a content object"),
        (lambda f: {**f, "key": "shop/_objects/bb/" + A + ".zst"}, "not a content object"),
        (lambda f: {**f, "key": "shop/shop-20251110T030000Z.dump.zst"}, "not a content object"),
        (lambda f: {**f, "name": "../x.dat"}, "not a file name"),
        (lambda f: {**f, "name": "sub/1.dat"}, "not a file name"),
        (lambda f: {**f, "name": "toc.dat"}, "not a file name"),  # twice
    ],
)
def test_a_lying_file_entry_is_not_believed(change, phrase) -> None:
    m = directory()
    toc, data = sorted(m.files, key=lambda f: f["name"] != "toc.dat")
    files = [toc, change(data)]
    lying = replace(m, files=files, sha256=manifest.files_digest(files))
    assert phrase in (lying.problem() or "")


def test_totals_and_digest_must_match_the_list() -> None:
    m = directory()
    assert "add up" in (replace(m, size_bytes=1).problem() or "")
    assert "digest" in (replace(m, sha256="d" * 64).problem() or "")
    data = next(f for f in m.files if f["name"] != "toc.dat")
    assert "toc.dat" in (replace(m, object_key=data["key"]).problem() or "")
    assert "lists files" in (replace(record("shop", NOW), files=m.files).problem() or "")


def test_bad_file_fields_are_invalid() -> None:
    data = json.loads(directory().to_json())
    data["files"][0]["size_bytes"] = -1
    with pytest.raises(IntegrityError, match="size_bytes"):
        Manifest.from_json(json.dumps(data).encode())
    data = json.loads(directory().to_json())
    data["format_version"] = 4
    with pytest.raises(IntegrityError, match="newer than this job"):
        Manifest.from_json(json.dumps(data).encode())


def test_orphans_never_include_content_objects_or_the_key() -> None:
    old = NOW - timedelta(days=3)
    infos = [
        ObjectInfo(manifest.content_key("shop", A, ".zst"), 7, old),
        ObjectInfo("shop/_dedup.key", 65, old),
        ObjectInfo(record("shop", old).object_key, 4, old),
    ]
    found = manifest.orphans(infos, NOW, 3600)
    assert [o.key for o in found] == [record("shop", old).object_key]


def test_the_address_depends_on_who_can_decrypt() -> None:
    plain = CodecConfig(compression="zstd")
    one = CodecConfig(compression="zstd", age_recipients=("age1one",))
    two = CodecConfig(compression="zstd", age_recipients=("age1two",))
    secret = CodecConfig(compression="zstd", age_passphrase=Secret("pw"))
    gzip = CodecConfig(compression="gzip")
    tags = {encoding_tag(c) for c in (plain, one, two, secret, gzip)}
    assert len(tags) == 5
    assert b"pw" not in encoding_tag(secret)


def test_a_manifest_with_packed_files_is_format_3_and_checks_offsets() -> None:
    """Files inside a pack name the pack, their offset and size: format 3 (a job before packs
    would read the whole pack as the file and call it damaged, so it must refuse it); without
    packed files a directory-format manifest stays format 2, which older jobs read."""
    pack = manifest.content_key("shop", B, ".zst")
    target = Target(storage=None)  # type: ignore[arg-type]
    target.files = [
        {"name": "toc.dat", "key": manifest.content_key("shop", A, ".zst"), "plain_bytes": 10,
         "size_bytes": 7, "sha256": "c" * 64, "new": True},
        {"name": "3456.dat", "key": pack, "offset": 0, "plain_bytes": 10, "size_bytes": 5,
         "sha256": "d" * 64, "new": True},
        {"name": "3457.dat", "key": pack, "offset": 5, "plain_bytes": 10, "size_bytes": 6,
         "sha256": "e" * 64, "new": True},
    ]  # fmt: skip
    m = directory_manifest(record("shop", NOW), target)
    assert m.format_version == manifest.PACKED_FORMAT_VERSION == 3
    assert m.problem() is None and m.size_bytes == 18
    assert Manifest.from_json(m.to_json()) == m
    data = json.loads(m.to_json())
    data["files"][1]["offset"] = -1
    with pytest.raises(IntegrityError, match=r"offset of 3457\.dat"):
        Manifest.from_json(json.dumps(data).encode())
    assert directory().format_version == manifest.DIRECTORY_FORMAT_VERSION == 2
