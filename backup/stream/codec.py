"""Streaming compression and encryption, both directions.

Backup direction is push: ``open_encoder(config, sink)`` returns a writer; every ``write`` pushes
compressed (then encrypted) bytes into ``sink`` and ``close()`` flushes the trailers. Restore
direction is pull: ``open_decoder(source, ...)`` returns a reader of the plain archive. Memory is a
few MiB whatever the size of the stream: nothing here buffers a whole dump.

Compression comes first (encrypted bytes do not compress); the stored object is a standard
``.zst`` / ``.gz`` stream, optionally wrapped in a standard age file, so that
``age -d -i key.txt X.dump.zst.age | zstd -d | pg_restore -d DB`` restores by hand.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Protocol

import zstandard

from backup.config import CodecConfig
from backup.errors import IntegrityError

# The suffix table is part of the key scheme (manifest.py); re-exported for the backup engine.
from backup.manifest import COMPRESSION_SUFFIX
from backup.manifest import object_suffix as object_suffix
from backup.storage import Readable

DEFAULT_LEVEL = {"zstd": 3, "gzip": 6}
READ_CHUNK_BYTES = 1024 * 1024
# What the encoder hands its sink at a time: the size of one item in each destination's queue.
WRITE_CHUNK_BYTES = 1024 * 1024
# A zstd worker's job: zstd's default at level 3 is 8 MiB (4 x the window), which costs each
# worker about 4 x that in input and output buffers; 1 MiB costs an eighth of it (two workers:
# 9 MiB in all, against 12 MiB with 2 MiB jobs) for about the same ratio and the same CPU.
ZSTD_JOB_BYTES = 1024 * 1024


class Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


class Encoder(Protocol):
    def write(self, data: bytes, /) -> object: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class _Compressor:
    """zstd or gzip (RFC 1952, so plain ``gzip -d`` opens it) into ``sink``.

    zstd with ``threads`` >= 1 compresses in that many worker threads of the zstd library (the
    output is one standard frame either way). Memory: zstd's window and buffers (about 3 MiB
    at level 3 with ``threads=0``, plus about 3 MiB per worker: ``ZSTD_JOB_BYTES`` in and out
    and the window overlap) and one output chunk of ``WRITE_CHUNK_BYTES``.
    """

    def __init__(
        self,
        compression: str,
        level: int | None,
        sink: Writable,
        on_abort: Callable[[], None] | None = None,
        threads: int = 0,
    ) -> None:
        self.sink = sink
        self.on_abort = on_abort
        level = level or DEFAULT_LEVEL.get(compression, 0)
        self._zstd: zstandard.ZstdCompressionWriter | None = None
        if compression == "zstd":
            # write_content_size is unknown for a stream; the checksum lets zstd -d detect damage.
            params = zstandard.ZstdCompressionParameters.from_level(
                level,
                threads=threads,
                job_size=ZSTD_JOB_BYTES if threads else 0,
                write_checksum=1,
            )
            # stream_writer, not compressobj: compressobj grows a bytes object per call, which
            # cost a third more CPU than zstd itself on a 280 MB dump.
            self._zstd = zstandard.ZstdCompressor(compression_params=params).stream_writer(
                sink, write_size=WRITE_CHUNK_BYTES, closefd=False
            )
        else:
            self._gzip = zlib.compressobj(level, zlib.DEFLATED, 31)

    def write(self, data: bytes) -> None:
        if self._zstd is not None:
            self._zstd.write(data)
            return
        out = self._gzip.compress(data)
        if out:
            self.sink.write(out)

    def close(self) -> None:
        if self._zstd is not None:
            self._zstd.flush(zstandard.FLUSH_FRAME)
        else:
            out = self._gzip.flush()
            if out:
                self.sink.write(out)
        close = getattr(self.sink, "close", None)
        if close:
            close()

    def abort(self) -> None:
        """Stop without flushing: an encryptor's worker thread ends, no trailer is written."""
        if self.on_abort:
            self.on_abort()


class _Passthrough:
    def __init__(self, sink: Writable, on_abort: Callable[[], None] | None = None) -> None:
        self.sink = sink
        self.on_abort = on_abort

    def write(self, data: bytes) -> None:
        self.sink.write(data)

    def close(self) -> None:
        close = getattr(self.sink, "close", None)
        if close:
            close()

    def abort(self) -> None:
        """Stop without flushing: an encryptor's worker thread ends, no trailer is written."""
        if self.on_abort:
            self.on_abort()


def open_encoder(config: CodecConfig, sink: Writable) -> Encoder:
    """compress -> encrypt -> ``sink``. ``close()`` flushes the trailers; ``abort()`` stops
    after a failure without writing them."""
    target: Writable = sink
    on_abort = None
    if config.encrypted:
        from backup.stream.age import open_encryptor

        encryptor = open_encryptor(config, sink)
        target, on_abort = encryptor, encryptor.abort
    if config.compression == "none":
        return _Passthrough(target, on_abort)
    return _Compressor(config.compression, config.level, target, on_abort, config.threads)


class _ZstdReader:
    """Pull-based zstd decompression of ``source``; damage or an early end raises
    ``IntegrityError``.

    Memory bound: one ``read`` returns at most ``size`` bytes (zstd's streaming API fills a
    bounded output buffer), reads at most ``READ_CHUNK_BYTES`` of ``source`` at a time, plus the
    frame's window (2 MiB at level 3, at most 8 MiB up to level 19, 128 MiB at 20-22). A
    one-shot decompression of a chunk would not be bounded: 1 MiB of a very compressible dump
    (pgbench's blank filler) inflates to hundreds of MiB.

    zstd's streaming reader ends quietly where its input ends, so the compressed bytes also go
    through ``_ZstdFrames``, which walks the frames' block headers and tells a stream cut short
    (the manifest's size and sha256 would catch it too, one layer down)."""

    def __init__(self, source: Readable) -> None:
        self._frames = _ZstdFrames(source)
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            self._frames, read_size=READ_CHUNK_BYTES, read_across_frames=True
        )

    def read(self, size: int = -1) -> bytes:
        want = READ_CHUNK_BYTES if size is None or size < 0 else size
        try:
            out = self._reader.read(want)
        except zstandard.ZstdError as err:
            raise IntegrityError(f"the zstd stream is damaged: {err}") from err
        if not out and not self._frames.complete():
            raise IntegrityError("the zstd stream ends early: the object is truncated")
        return out


# https://github.com/facebook/zstd/blob/dev/doc/zstd_compression_format.md
_ZSTD_MAGIC = 0xFD2FB528
_SKIPPABLE_MAGIC_MASK, _SKIPPABLE_MAGIC = 0xFFFFFFF0, 0x184D2A50


class _ZstdFrames:
    """Reads through ``source`` and follows the zstd frame structure (headers, block headers,
    checksums; block contents are skipped, not decoded), so that ``complete()`` can tell
    whether the stream ended between two frames. Damage is left to the decoder."""

    def __init__(self, source: Readable) -> None:
        self.source = source
        self._pending = bytearray()  # an incomplete header, waiting for more bytes
        self._skip = 0  # bytes of block content (or a skippable frame) still to pass
        self._state = "magic"  # magic, header, block, checksum
        self._header_bytes = 0
        self._checksum = False
        self._frames = 0
        self._pending_skippable = b""  # the first size byte of a skippable frame

    def read(self, size: int = -1) -> bytes:
        chunk = self.source.read(size)
        if chunk:
            self._walk(memoryview(chunk))
        return chunk

    def complete(self) -> bool:
        return self._frames > 0 and self._state == "magic" and not self._pending and not self._skip

    def _walk(self, data: memoryview) -> None:
        i, end = 0, len(data)
        while i < end:
            if self._skip:
                step = min(self._skip, end - i)
                self._skip -= step
                i += step
                continue
            need = self._need()
            take = min(need - len(self._pending), end - i)
            self._pending += data[i : i + take]
            i += take
            if len(self._pending) == need:
                self._advance(bytes(self._pending))
                self._pending.clear()

    def _need(self) -> int:
        return {"magic": 5, "header": self._header_bytes, "block": 3, "checksum": 4}[self._state]

    def _advance(self, field: bytes) -> None:
        if self._state == "magic":
            magic = int.from_bytes(field[:4], "little")
            if magic & _SKIPPABLE_MAGIC_MASK == _SKIPPABLE_MAGIC:
                # 4 bytes of size follow the magic; one of them was read as the descriptor.
                self._state, self._header_bytes = "header", 3
                self._pending_skippable = field[4:5]
                return
            self._pending_skippable = b""
            descriptor = field[4]
            single_segment = (descriptor >> 5) & 1
            self._checksum = bool((descriptor >> 2) & 1)
            fcs = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
            dictionary = (0, 1, 2, 4)[descriptor & 3]
            self._header_bytes = (0 if single_segment else 1) + dictionary + fcs
            self._state = "header" if self._header_bytes else "block"
            if magic != _ZSTD_MAGIC:
                self._state = "magic"  # not zstd: the decoder reports it
        elif self._state == "header":
            if self._pending_skippable:
                self._skip = int.from_bytes(self._pending_skippable + field, "little")
                self._state = "magic"
                return
            self._state = "block"
        elif self._state == "block":
            header = int.from_bytes(field, "little")
            last, kind, size = header & 1, (header >> 1) & 3, header >> 3
            self._skip = 1 if kind == 1 else size  # an RLE block holds one byte
            if last:
                self._state = "checksum" if self._checksum else "magic"
                if not self._checksum:
                    self._frames += 1
        else:
            self._state = "magic"
            self._frames += 1


class _GzipReader:
    """Pull-based gzip decompression of ``source`` (several members read as one stream, as
    ``gzip -d`` does); damage or an early end raises ``IntegrityError``.

    Memory bound: one ``read`` returns at most ``size`` bytes (zlib's ``max_length``; the input
    it did not consume waits in ``unconsumed_tail``), plus one ``READ_CHUNK_BYTES`` chunk of
    ``source`` and zlib's 32 KiB window."""

    def __init__(self, source: Readable) -> None:
        self.source = source
        self._obj = zlib.decompressobj(31)
        self._pending = b""
        self._eof = False

    def read(self, size: int = -1) -> bytes:
        want = READ_CHUNK_BYTES if size is None or size < 0 else size
        while not self._eof:
            if not self._pending:
                self._pending = self.source.read(READ_CHUNK_BYTES)
                if not self._pending:
                    self._eof = True
                    if not self._obj.eof:
                        raise IntegrityError("the gzip stream ends early: the object is truncated")
                    break
            try:
                out = self._obj.decompress(self._pending, want)
            except zlib.error as err:
                raise IntegrityError(f"the gzip stream is damaged: {err}") from err
            self._pending = self._obj.unconsumed_tail
            if self._obj.eof:
                # The next member, if any, starts in what followed this one.
                self._pending = self._obj.unused_data
                self._obj = zlib.decompressobj(31)
                if not self._pending:
                    self._pending = self.source.read(READ_CHUNK_BYTES)
                    if not self._pending:
                        self._eof = True
                        return out
            if out:
                return out
        return b""


def open_decoder(
    source: Readable, compression: str, encrypted: bool, config: CodecConfig
) -> Readable:
    """``source`` (the stored object) -> decrypt -> decompress -> the plain archive."""
    if encrypted:
        from backup.stream.age import open_decryptor

        source = open_decryptor(config, source)
    if compression == "none":
        return source
    if compression not in COMPRESSION_SUFFIX:
        raise IntegrityError(f"unknown compression {compression!r} in the manifest")
    if compression == "zstd":
        return _ZstdReader(source)
    return _GzipReader(source)
