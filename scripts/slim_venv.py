"""Drop from the image's venv what a run never reads, after pip's hash-checked install.

    python scripts/slim_venv.py SITE_PACKAGES [--aws-services s3,sts,...]

Run by the Dockerfile with the venv's own Python (the check imports botocore). Two cuts:

- the debug sections of native extensions (``strip --strip-debug``): zstandard's wheel ships
  both of its backends with their DWARF, 23 MB of its 24. A file with an RPATH or RUNPATH is
  left alone: auditwheel rewrote it with patchelf, and strip is known to break such files.
- botocore's models of the AWS services the job never calls: it talks to S3 only, and
  botocore's credential providers call STS (roles, web identity), SSO, SSO-OIDC and sign-in.
  Every service name that the code of botocore, boto3 and s3transfer hands to a client creator
  must still have its model, or this stops with exit 1 (a new botocore that calls a new service
  fails the build, not a run); then a client of each kept service is created from its model.

Prints what each cut saved. Exit 0 done, 1 a check failed, 2 usage.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

DEFAULT_AWS_SERVICES = ("s3", "sts", "sso", "sso-oidc", "signin")

# client_creator('sts', ...), create_client('s3'), create_nested_client(self._session, "sso-oidc")
_CLIENT_CALL = re.compile(
    r"(?:client_creator|create_client|create_nested_client)\(\s*(?:[\w.]+,\s*)?['\"]([a-z0-9-]+)['\"]"
)
_PACKAGES_THAT_CALL_CLIENTS = ("botocore", "boto3", "s3transfer")


def tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _elf_output(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def strippable(shared_object: Path) -> bool:
    """Has debug sections, and was not rewritten by patchelf (no RPATH/RUNPATH)."""
    sections = _elf_output("readelf", "--section-headers", "--wide", str(shared_object))
    if ".debug_info" not in sections:
        return False
    dynamic = _elf_output("readelf", "--dynamic", "--wide", str(shared_object))
    return "(RPATH)" not in dynamic and "(RUNPATH)" not in dynamic


def strip_debug(site: Path) -> int:
    saved = 0
    for shared_object in sorted(site.rglob("*.so*")):
        if shared_object.is_symlink() or not shared_object.is_file():
            continue
        if not strippable(shared_object):
            continue
        before = shared_object.stat().st_size
        subprocess.run(["strip", "--strip-debug", str(shared_object)], check=True)
        after = shared_object.stat().st_size
        print(f"strip --strip-debug {shared_object.relative_to(site)}: {before} -> {after} bytes")
        saved += before - after
    return saved


def called_services(site: Path) -> set[str]:
    """Every service name a literal in botocore's, boto3's or s3transfer's code creates a
    client for."""
    names: set[str] = set()
    for package in _PACKAGES_THAT_CALL_CLIENTS:
        for source in (site / package).rglob("*.py"):
            names.update(_CLIENT_CALL.findall(source.read_text(encoding="utf-8")))
    return names


def prune_botocore(site: Path, keep: set[str]) -> int:
    data = site / "botocore" / "data"
    if not data.is_dir():
        raise SystemExit(f"slim_venv: no botocore models in {data}")
    missing = sorted(called_services(site) - keep)
    if missing:
        print(
            f"slim_venv: botocore or s3transfer create clients for {', '.join(missing)}: "
            "add them to --aws-services (the Dockerfile's BOTOCORE_SERVICES)",
            file=sys.stderr,
        )
        raise SystemExit(1)
    absent = sorted(name for name in keep if not (data / name).is_dir())
    if absent:
        print(f"slim_venv: botocore has no model for {', '.join(absent)}", file=sys.stderr)
        raise SystemExit(1)
    saved = 0
    for service in sorted(p for p in data.iterdir() if p.is_dir()):
        if service.name not in keep:
            saved += tree_bytes(service)
            shutil.rmtree(service)
    return saved


def check_clients(keep: set[str]) -> None:
    """A client of each kept service is created from what is left (no request is made)."""
    import botocore.session

    session = botocore.session.Session()
    # Placeholder keys: without them, creating a client would look for credentials (IMDS...).
    placeholder = {"aws_access_key_id": "unused", "aws_secret_access_key": "unused"}
    for name in sorted(keep):
        session.create_client(name, region_name="us-east-1", **placeholder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path, help="the venv's site-packages directory")
    parser.add_argument(
        "--aws-services",
        default=",".join(DEFAULT_AWS_SERVICES),
        help="botocore models to keep, comma-separated (default: %(default)s)",
    )
    parser.add_argument("--no-check", action="store_true", help="do not create the clients")
    args = parser.parse_args(argv)
    site: Path = args.site
    if not site.is_dir():
        parser.error(f"{site} is not a directory")
    keep = {name.strip() for name in args.aws_services.split(",") if name.strip()}
    if not keep:
        parser.error("--aws-services is empty")
    before = tree_bytes(site)
    stripped = strip_debug(site)
    pruned = prune_botocore(site, keep)
    if not args.no_check:
        check_clients(keep)
    mb = 1e6
    print(
        f"slim_venv: {before / mb:.1f} MB -> {tree_bytes(site) / mb:.1f} MB "
        f"(debug sections {stripped / mb:.1f} MB, botocore models {pruned / mb:.1f} MB; "
        f"kept the models of {', '.join(sorted(keep))})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
