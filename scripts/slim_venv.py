"""Drop from the image's venv what a run never reads, after pip's hash-checked install.

    python scripts/slim_venv.py SITE_PACKAGES [--aws-services s3,sts,...] [--keep-sources apprise]

Run by the Dockerfile with the venv's own Python (the check imports botocore, and the bytecode
it writes must be that Python's). The cuts:

- the debug sections and symbol tables of native extensions (``strip --strip-unneeded``, which
  keeps the dynamic symbols Python imports them by): zstandard's wheel ships both of its
  backends with their DWARF, 23 MB of its 24; cryptography's Rust library carries a 2.9 MB
  symbol table. A file with an RPATH or RUNPATH is
  left alone: auditwheel rewrote it with patchelf, and strip is known to break such files.
- botocore's models of the AWS services the job never calls: it talks to S3 only, and
  botocore's credential providers call STS (roles, web identity), SSO, SSO-OIDC and sign-in.
  Every service name that the code of botocore, boto3 and s3transfer hands to a client creator
  must still have its model, or this stops with exit 1 (a new botocore that calls a new service
  fails the build, not a run); then a client of each kept service is created from its model.
- zstandard's cffi backend: the job uses its C backend (zstandard's default); the cffi one is
  loaded only when that fails or ``PYTHON_ZSTANDARD_IMPORT_POLICY`` asks for it.
- gettext catalogs and their sources (``*.mo``, ``*.po``, ``*.pot``; apprise's translations):
  the job logs in English and apprise falls back to its own strings when a catalog is missing.
- sources, where the bytecode is enough: each module's ``.py`` and ``__pycache__`` entry become
  one ``.pyc`` in the source's place, which Python imports as it is (the image's root filesystem
  is read-only, so bytecode cannot be written at run time: it must be there, and the source
  beside it is then only read for tracebacks, which show file and line without the code).
  Packages that find their own modules by listing ``*.py`` files (apprise's plugins) keep
  their sources (``--keep-sources``); so does the job itself, installed after this.

Prints what each cut saved. Exit 0 done, 1 a check failed, 2 usage.
"""

from __future__ import annotations

import argparse
import py_compile
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
# apprise's plugin manager imports every ``<name>.py`` it lists in its plugins/ folder.
DEFAULT_KEEP_SOURCES = ("apprise",)


def tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _elf_output(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def strippable(shared_object: Path) -> bool:
    """Has debug sections or a symbol table, and was not rewritten by patchelf (no
    RPATH/RUNPATH)."""
    sections = _elf_output("readelf", "--section-headers", "--wide", str(shared_object))
    if ".debug_info" not in sections and " .symtab " not in sections:
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
        subprocess.run(["strip", "--strip-unneeded", str(shared_object)], check=True)
        after = shared_object.stat().st_size
        print(
            f"strip --strip-unneeded {shared_object.relative_to(site)}: {before} -> {after} bytes"
        )
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


def drop_zstandard_cffi(site: Path) -> int:
    package = site / "zstandard"
    if not (package / "__init__.py").exists() or not list(package.glob("backend_c.*")):
        return 0
    saved = 0
    for path in [*package.glob("_cffi.*"), *package.glob("backend_cffi.py")]:
        saved += path.stat().st_size
        path.unlink()
    for cached in package.glob("__pycache__/backend_cffi.*"):
        saved += cached.stat().st_size
        cached.unlink()
    return saved


def drop_catalogs(site: Path) -> int:
    saved = 0
    for path in sorted([*site.rglob("*.mo"), *site.rglob("*.po"), *site.rglob("*.pot")]):
        if path.is_file() and not path.is_symlink():
            saved += path.stat().st_size
            path.unlink()
    return saved


def _bytecode_only(root: Path) -> int:
    """Every ``.py`` under ``root`` (a package folder or one module) replaced by a legacy
    ``.pyc`` beside it; a file that does not compile is left as it is."""
    before = tree_bytes(root) if root.is_dir() else root.stat().st_size
    sources = [root] if root.is_file() else sorted(root.rglob("*.py"))
    for source in sources:
        try:
            py_compile.compile(str(source), cfile=str(source) + "c", doraise=True)
        except py_compile.PyCompileError:
            continue  # not importable by this Python anyway (another version's syntax)
        source.unlink()
    if root.is_dir():
        for cache in sorted(root.rglob("__pycache__"), reverse=True):
            shutil.rmtree(cache)
    after = tree_bytes(root) if root.is_dir() else (Path(str(root) + "c")).stat().st_size
    return before - after


def bytecode_only(site: Path, keep_sources: set[str]) -> int:
    """Sources replaced by bytecode in every top-level package and module of ``site`` but
    those named in ``keep_sources``."""
    saved = 0
    for entry in sorted(site.iterdir()):
        if entry.name.endswith((".dist-info", ".data")) or entry.name == "__pycache__":
            continue
        name = entry.name.removesuffix(".py")
        if name in keep_sources or entry.is_symlink():
            continue
        if entry.is_dir() or entry.suffix == ".py":
            saved += _bytecode_only(entry)
    top_cache = site / "__pycache__"
    if top_cache.is_dir():
        for cached in top_cache.glob("*.pyc"):
            if cached.name.split(".")[0] not in keep_sources:
                saved += cached.stat().st_size
                cached.unlink()
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
    parser.add_argument(
        "--keep-sources",
        default=",".join(DEFAULT_KEEP_SOURCES),
        help="top-level packages that keep their .py files, comma-separated "
        "(default: %(default)s); every other one keeps only its bytecode",
    )
    parser.add_argument("--no-check", action="store_true", help="do not create the clients")
    args = parser.parse_args(argv)
    site: Path = args.site
    if not site.is_dir():
        parser.error(f"{site} is not a directory")
    keep = {name.strip() for name in args.aws_services.split(",") if name.strip()}
    if not keep:
        parser.error("--aws-services is empty")
    keep_sources = {name.strip() for name in args.keep_sources.split(",") if name.strip()}
    before = tree_bytes(site)
    stripped = strip_debug(site)
    pruned = prune_botocore(site, keep)
    if not args.no_check:
        check_clients(keep)
    cffi = drop_zstandard_cffi(site)
    catalogs = drop_catalogs(site)
    sources = bytecode_only(site, keep_sources)
    mb = 1e6
    print(
        f"slim_venv: {before / mb:.1f} MB -> {tree_bytes(site) / mb:.1f} MB "
        f"(debug sections and symbols {stripped / mb:.1f} MB, "
        f"botocore models {pruned / mb:.1f} MB, "
        f"zstandard's cffi backend {cffi / mb:.1f} MB, catalogs {catalogs / mb:.1f} MB, "
        f"sources {sources / mb:.1f} MB; kept the models of {', '.join(sorted(keep))} "
        f"and the sources of {', '.join(sorted(keep_sources)) or 'none'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
