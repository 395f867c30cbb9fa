"""The content address's keyed hash (issue 23, part 3): HMAC-SHA256 (what the directory format
uses, ``dirformat/address.py``) against BLAKE3's keyed mode (PyPI ``blake3``, when installed) on
a stream of --mb MB read in 1 MiB chunks, as ``file_addresses`` reads a file. Nothing is
asserted: it is a report.

    python bench/keyed_hash.py [--mb 1024] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hmac
import os
import statistics
import time

CHUNK = 1024 * 1024


def hmac_sha256(key: bytes, chunks: int, chunk: bytes) -> str:
    mac = hmac.new(key, b"tag", "sha256")
    for _ in range(chunks):
        mac.update(chunk)
    return mac.hexdigest()


def blake3_keyed(key: bytes, chunks: int, chunk: bytes) -> str:
    import blake3

    mac = blake3.blake3(b"tag", key=key, max_threads=1)
    for _ in range(chunks):
        mac.update(chunk)
    return mac.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    key, chunk = os.urandom(32), os.urandom(CHUNK)
    ways = {"hmac-sha256": hmac_sha256}
    try:
        import blake3  # noqa: F401

        ways["blake3-keyed"] = blake3_keyed
    except ImportError:
        print("blake3 is not installed: HMAC-SHA256 alone")
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(max(1, args.rounds)):
        for name, fn in ways.items():
            started = time.perf_counter()
            fn(key, args.mb, chunk)
            times[name].append(time.perf_counter() - started)
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"{name:<14} {median:6.2f} s for {args.mb} MiB: {args.mb / median:7.0f} MiB/s")


if __name__ == "__main__":
    main()
