"""The job's real code against a simulated B2 whose stored bytes live in files, not in memory.

    b2_child.py ARGS...      (BENCH_B2_DIR names the simulator's directory)

There is no B2 server here, only b2sdk's ``RawSimulator``, which keeps every file's bytes in
the memory of the process that uploads them: that would count the whole backup in the job's
RSS, and lose it when the process ends. This wrapper installs ``DiskSimulator`` as the raw API
of every ``B2Api`` the job builds (``backup.storage.b2.storage.B2Api``), then runs
``backup.cli.main(ARGS)``. The simulator streams each upload (a whole small file or one part
of a large file) to a file in 1 MiB chunks, hashing it on the way; a finished large file is its
parts concatenated on disk; downloads read the file in the chunks asked for (no random sleeps,
unlike the stock simulator). Its state (one master key, one bucket, the finished files) is
saved in ``state.json`` after every change, so a backup run and a later restore run share it.

What this adds to the job's measurements: the simulator's own CPU (hashing and file writes,
counted as the job's CPU) and about 1 MiB of buffers; HTTP and TLS are absent.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from b2sdk._internal.http_constants import HEX_DIGITS_AT_END
from b2sdk._internal.raw_api import ALL_CAPABILITIES
from b2sdk._internal.raw_simulator import FakeResponse, FileSimulator, PartSimulator
from b2sdk.v2 import B2Api, B2HttpApiConfig
from b2sdk.v2._compat import _file_infos_rename
from b2sdk.v2.raw_simulator import BucketSimulator, KeySimulator, RawSimulator

BUCKET = "bench-bucket"
KEY_ID = "benchkey0001"
KEY_SECRET = "benchsecret0001"
ACCOUNT_ID = "benchaccount"
CHUNK_BYTES = 1024 * 1024
ENV_DIR = "BENCH_B2_DIR"
_lock = threading.Lock()


class DiskBytes:
    """A stored file's bytes as the simulator uses them (``len`` and slices), read on demand."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, item: slice) -> bytes:
        start, stop, _ = item.indices(self.size)
        return self.read(start, max(0, stop - start))

    def read(self, offset: int, length: int) -> bytes:
        with open(self.path, "rb") as f:
            return os.pread(f.fileno(), length, offset)


class _DiskRaw:
    def __init__(self, data: DiskBytes, start: int, stop: int) -> None:
        self.data, self.position, self.stop = data, start, stop

    def tell(self) -> int:
        return self.position

    def read(self, size: int = -1) -> bytes:
        size = self.stop - self.position if size is None or size < 0 else size
        chunk = self.data.read(self.position, min(size, self.stop - self.position))
        self.position += len(chunk)
        return chunk


class DiskResponse(FakeResponse):
    def __init__(self, account_auth_token_or_none, file_sim, url, range_=None) -> None:
        data = file_sim.data_bytes
        start, end = range_ if range_ is not None else (0, len(data) - 1)
        self.raw = _DiskRaw(data, start, min(end + 1, len(data)))
        self.headers = file_sim.as_download_headers(account_auth_token_or_none, range_)
        self.url = url
        self.range_ = range_

    def iter_content(self, chunk_size: int = 1):
        while chunk := self.raw.read(chunk_size):
            yield chunk


class DiskFile(FileSimulator):
    def finish(self, part_sha1_array) -> None:
        parts = [p for p in self.parts if p is not None]
        final = _root() / "data" / f"{self.file_id}"
        with open(final, "wb") as out:
            for part in parts:
                with open(part.part_data.path, "rb") as f:
                    shutil.copyfileobj(f, out, CHUNK_BYTES)
        sha1s = [p.content_sha1 for p in parts]
        if sha1s != part_sha1_array:
            raise ValueError(f"part sha1s differ: {sha1s} != {part_sha1_array}")
        for part in parts:
            part.part_data.path.unlink()
        self.data_bytes = DiskBytes(final)
        self.content_length = len(self.data_bytes)
        self.action = "upload"


def _stream_to_file(stream, length: int, sha1_at_end: bool, path: Path) -> tuple[DiskBytes, str]:
    """Copy ``length`` bytes of ``stream`` to ``path``; (the bytes, their sha1). With
    ``sha1_at_end`` the last 40 bytes are the sha1 b2sdk computed on the way, not data."""
    stream.seek(0)
    digest, pending, left = hashlib.sha1(usedforsecurity=False), b"", length
    with open(path, "wb") as out:
        while left > 0:
            chunk = stream.read(min(CHUNK_BYTES, left))
            if not chunk:
                raise OSError(f"upload stream ended {left} bytes early")
            left -= len(chunk)
            buf = pending + chunk
            keep = 40 if sha1_at_end else 0
            emit, pending = (buf[:-keep], buf[-keep:]) if keep else (buf, b"")
            out.write(emit)
            digest.update(emit)
    if sha1_at_end and pending.decode() != digest.hexdigest():
        raise ValueError("sha1 at the end of the stream does not match")
    return DiskBytes(path), digest.hexdigest()


class DiskBucket(BucketSimulator):
    FILE_SIMULATOR_CLASS = DiskFile
    RESPONSE_CLASS = DiskResponse

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.upload_timestamp_counter = itertools.count(int(time.time() * 1000))

    @_file_infos_rename
    def upload_file(
        self,
        upload_id,
        upload_auth_token,
        file_name,
        content_length,
        content_type,
        content_sha1,
        file_info,
        data_stream,
        server_side_encryption=None,
        file_retention=None,
        legal_hold=None,
        custom_upload_timestamp=None,
        cache_control=None,
    ):
        if cache_control is not None:
            file_info["b2-cache-control"] = cache_control
        file_id = self._next_file_id()
        path = _root() / "data" / file_id
        data, sha1 = _stream_to_file(
            data_stream, content_length, content_sha1 == HEX_DIGITS_AT_END, path
        )
        if content_sha1 not in (HEX_DIGITS_AT_END, "do_not_verify") and content_sha1 != sha1:
            path.unlink()
            raise ValueError(f"{file_name}: sha1 mismatch")
        encryption = server_side_encryption or self.default_server_side_encryption
        if encryption:
            file_info = encryption.add_key_id_to_file_info(file_info)
        file_sim = DiskFile(
            self.account_id,
            self,
            file_id,
            "upload",
            file_name,
            content_type,
            sha1,
            file_info,
            data,
            custom_upload_timestamp or next(self.upload_timestamp_counter),
            server_side_encryption=encryption,
            file_retention=file_retention,
            legal_hold=legal_hold,
        )
        self.file_id_to_file[file_id] = file_sim
        self.file_name_and_id_to_file[file_sim.sort_key()] = file_sim
        _save(self)
        return file_sim.as_upload_result(upload_auth_token)

    def upload_part(
        self,
        file_id,
        part_number,
        content_length,
        sha1_sum,
        input_stream,
        server_side_encryption=None,
    ):
        path = _root() / "data" / f"{file_id}.part{part_number}"
        data, sha1 = _stream_to_file(
            input_stream, content_length, sha1_sum == HEX_DIGITS_AT_END, path
        )
        file_sim = self.file_id_to_file[file_id]
        file_sim.add_part(part_number, PartSimulator(file_id, part_number, len(data), sha1, data))
        result = dict(
            fileId=file_id, partNumber=part_number, contentLength=len(data), contentSha1=sha1
        )
        if server_side_encryption is not None:
            result["serverSideEncryption"] = server_side_encryption.serialize_to_json_for_request()
        return result

    def finish_large_file(self, account_auth_token, file_id, part_sha1_array):
        result = super().finish_large_file(account_auth_token, file_id, part_sha1_array)
        _save(self)
        return result

    def delete_file_version(self, *args, **kwargs):
        result = super().delete_file_version(*args, **kwargs)
        _save(self)
        return result

    def hide_file(self, *args, **kwargs):
        result = super().hide_file(*args, **kwargs)
        _save(self)
        return result


class DiskSimulator(RawSimulator):
    """The stock simulator with ``DiskBucket``s, loading the state saved in ``BENCH_B2_DIR``."""

    BUCKET_SIMULATOR_CLASS = DiskBucket

    def __init__(self, b2_http=None) -> None:
        super().__init__(b2_http)
        self.key_id_to_key[KEY_ID] = KeySimulator(
            account_id=ACCOUNT_ID,
            name="master",
            application_key_id=KEY_ID,
            key=KEY_SECRET,
            capabilities=ALL_CAPABILITIES,
            expiration_timestamp_or_none=None,
            bucket_id_or_none=None,
            bucket_name_or_none=None,
            name_prefix_or_none=None,
        )
        token = self.authorize_account(self.API_URL, KEY_ID, KEY_SECRET)["authorizationToken"]
        self.create_bucket(self.API_URL, token, ACCOUNT_ID, BUCKET, "allPrivate")
        bucket = self.bucket_name_to_bucket[BUCKET]
        ids = [int(bucket.FIRST_FILE_ID) + 1]
        for record in _load()["files"]:
            data = (
                DiskBytes(_root() / "data" / record["id"]) if record["action"] == "upload" else None
            )
            file_sim = DiskFile(
                ACCOUNT_ID,
                bucket,
                record["id"],
                record["action"],
                record["name"],
                record["content_type"],
                record["sha1"],
                record["info"],
                data,
                record["timestamp"],
                server_side_encryption=bucket.default_server_side_encryption
                if record["action"] == "upload"
                else None,
            )
            bucket.file_id_to_file[record["id"]] = file_sim
            bucket.file_name_and_id_to_file[file_sim.sort_key()] = file_sim
            self.file_id_to_bucket_id[record["id"]] = bucket.bucket_id
            ids.append(int(record["id"]))
        bucket.file_id_counter = iter(range(min(ids) - 1, 0, -1))


def _root() -> Path:
    return Path(os.environ[ENV_DIR])


def _load(root: Path | None = None) -> dict:
    path = (root or _root()) / "state.json"
    return json.loads(path.read_text()) if path.exists() else {"files": []}


def _save(bucket: BucketSimulator) -> None:
    files = [
        {
            "id": f.file_id,
            "action": f.action,
            "name": f.name,
            "content_type": f.content_type,
            "sha1": f.content_sha1,
            "info": f.file_info,
            "timestamp": f.upload_timestamp,
            "size": len(f.data_bytes) if f.data_bytes is not None else 0,
        }
        for f in list(bucket.file_id_to_file.values())
        if f.action in ("upload", "hide")
    ]
    with _lock:
        tmp = _root() / "state.json.tmp"
        tmp.write_text(json.dumps({"files": files}))
        tmp.replace(_root() / "state.json")


# -- for the benchmark: the account, what is stored, removing it ------------------------------


def create_account(root: Path) -> tuple[str, str]:
    """A fresh simulated account in ``root``; (key id, application key) for the job."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "state.json").write_text(json.dumps({"files": []}))
    return KEY_ID, KEY_SECRET


def listing(root: Path, prefix: str) -> dict[str, int]:
    return {
        f["name"]: f["size"]
        for f in _load(root)["files"]
        if f["action"] == "upload" and f["name"].startswith(prefix)
    }


def remove_prefix(root: Path, prefix: str) -> None:
    state = _load(root)
    kept = []
    for f in state["files"]:
        if f["name"].startswith(prefix):
            (root / "data" / f["id"]).unlink(missing_ok=True)
        else:
            kept.append(f)
    (root / "state.json").write_text(json.dumps({"files": kept}))


def main() -> int:
    import backup.storage.b2.storage as b2_storage
    from backup.cli import main as job_main

    def simulated_api(account_info, cache=None, **kwargs) -> B2Api:
        config = B2HttpApiConfig(_raw_api_class=DiskSimulator)
        return B2Api(account_info, cache=cache, api_config=config, **kwargs)

    b2_storage.B2Api = simulated_api
    return job_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
