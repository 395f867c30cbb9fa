"""dump/packs.py on a real local destination: small files encoded one by one into packs,
sealed at PACK_BYTES (several packs), each file's range a whole stream that decodes alone to
the file; a destination whose put fails fails alone."""

from __future__ import annotations

import hashlib
import random
import threading

import zstandard

from backup.config import load
from backup.dump import packs
from backup.dump.reuse import Target
from backup.errors import StorageError
from backup.storage.local import LocalStorage


class Broken(LocalStorage):
    def put(self, key, stream):
        raise StorageError(f"{self.url}: no room")


def test_small_files_fill_several_packs_each_range_decodes_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(packs, "PACK_BYTES", 20_000)
    config = load(
        {
            "PGDATABASE": "shop",
            "BACKUP_DESTINATIONS": f"file://{tmp_path / 'a'}",
            "BACKUP_FORMAT": "directory",
        }
    )
    good = Target(LocalStorage(tmp_path / "a"), key=b"k" * 32)
    bad = Target(Broken(tmp_path / "b"), key=b"k" * 32)
    spool, packing = tmp_path / "spool", tmp_path / "packing"
    spool.mkdir()
    packing.mkdir()
    packer = packs.Packer(config, [good, bad], "shop", ".zst", b"tag", str(packing))
    contents = {}
    rng = random.Random(3)
    for n in range(40):
        name = f"{1000 + n}.dat"
        contents[name] = rng.randbytes(rng.randrange(0, 3000))
        (spool / name).write_bytes(contents[name])
        assert packer.add(name, str(spool / name), threading.Event()) == len(contents[name])
        assert not (spool / name).exists()
    packer.flush()
    assert isinstance(bad.error, StorageError) and not bad.files
    assert not list(packing.iterdir())  # each pack's file removed once stored
    assert sorted(f["name"] for f in good.files) == sorted(contents)
    assert len(good.packs) >= 3 and set(good.uploaded) == set(good.packs)
    for entry in good.files:
        with good.storage.open_range(entry["key"], entry["offset"], entry["size_bytes"]) as raw:
            stored = raw.read()
        assert hashlib.sha256(stored).hexdigest() == entry["sha256"]
        plain = zstandard.ZstdDecompressor().decompress(stored)
        assert plain == contents[entry["name"]] and entry["plain_bytes"] == len(plain)
    for key, size in good.packs.items():
        assert (tmp_path / "a" / key).stat().st_size == size
    assert packs.packable("1.dat", 10, 1024) and not packs.packable("toc.dat", 10, 1024)
    assert not packs.packable("1.dat", 1024, 1024)
