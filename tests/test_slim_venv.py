"""scripts/slim_venv.py, which the Dockerfile runs on the image's venv after the hash-checked
install: it strips the debug sections of real extensions (which still import afterwards), keeps
only the botocore models it is told to, and stops the build when botocore's own code creates a
client for a service whose model it would drop; it drops zstandard's unused backend and
translation catalogs, and replaces sources by bytecode that imports as before."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import botocore
import zstandard

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "slim_venv.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _fake_botocore(site: Path, services: list[str], calls: str) -> Path:
    data = site / "botocore" / "data"
    for service in services:
        (data / service / "2020-01-01").mkdir(parents=True)
        (data / service / "2020-01-01" / "service-2.json.gz").write_bytes(b"x" * 1000)
    (data / "endpoints.json").write_text("{}")
    (site / "botocore" / "credentials.py").write_text(calls)
    return data


def test_keeps_the_models_it_is_told_to_and_the_top_level_files(tmp_path):
    data = _fake_botocore(
        tmp_path,
        ["s3", "sts", "ec2", "sso-oidc"],
        "client = self._client_creator('sts', config=config)\n"
        'create_nested_client(self._session, "sso-oidc", config=config)\n',
    )
    result = _run(str(tmp_path), "--aws-services", "s3,sts,sso-oidc", "--no-check")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in data.iterdir()) == ["endpoints.json", "s3", "sso-oidc", "sts"]
    assert "botocore models 0.0 MB" in result.stdout


def test_stops_when_botocore_calls_a_service_it_would_drop(tmp_path):
    data = _fake_botocore(tmp_path, ["s3", "sts", "signin"], "self._client_creator('signin')\n")
    result = _run(str(tmp_path), "--aws-services", "s3,sts", "--no-check")
    assert result.returncode == 1
    assert "signin" in result.stderr and "BOTOCORE_SERVICES" in result.stderr
    assert (data / "signin").is_dir()  # nothing removed


def test_stops_when_a_kept_service_has_no_model(tmp_path):
    _fake_botocore(tmp_path, ["s3"], "")
    result = _run(str(tmp_path), "--aws-services", "s3,nosuch", "--no-check")
    assert result.returncode == 1 and "nosuch" in result.stderr


def test_bad_usage_is_exit_2(tmp_path):
    assert _run(str(tmp_path / "missing")).returncode == 2
    assert _run(str(tmp_path), "--aws-services", ",").returncode == 2


def test_the_services_kept_by_default_cover_every_client_the_locked_botocore_creates():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import slim_venv
    finally:
        sys.path.remove(str(SCRIPT.parent))
    site = Path(botocore.__file__).parents[1]
    assert slim_venv.called_services(site) <= set(slim_venv.DEFAULT_AWS_SERVICES)
    assert "s3" in slim_venv.called_services(site)


def test_strips_debug_sections_from_a_real_extension_which_still_works(tmp_path):
    """zstandard's wheel ships its extensions with their DWARF (23 MB of 24)."""
    package = Path(zstandard.__file__).parent
    copy = tmp_path / "zstandard"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "botocore" / "data" / "s3").mkdir(parents=True)
    before = sum(p.stat().st_size for p in copy.glob("*.so"))
    result = _run(str(tmp_path), "--aws-services", "s3", "--no-check")
    assert result.returncode == 0, result.stderr
    after = sum(p.stat().st_size for p in copy.glob("*.so"))
    assert after < before / 4, (before, after)
    assert "strip --strip-unneeded zstandard/" in result.stdout
    assert not list(copy.glob("_cffi.*")) and not (copy / "backend_cffi.py").exists()
    roundtrip = (
        f"import zstandard as z; assert z.__file__.startswith({str(tmp_path)!r}); "
        "assert z.ZstdDecompressor().decompress(z.ZstdCompressor().compress(b'ok' * 99)) "
        "== b'ok' * 99"
    )
    check = subprocess.run(
        [sys.executable, "-c", roundtrip],
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stderr


def test_sources_become_bytecode_that_imports_and_names_file_and_line(tmp_path):
    (tmp_path / "botocore" / "data" / "s3").mkdir(parents=True)
    package = tmp_path / "somepkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from somepkg.sub.mod import fail\nVALUE = 42\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "mod.py").write_text("def fail():\n    raise ValueError('boom')\n")
    (package / "py2_only.py").write_text("print 'not python 3'\n")
    (tmp_path / "single.py").write_text("X = 1\n")
    kept = tmp_path / "apprise" / "plugins"
    kept.mkdir(parents=True)
    (kept / "email.py").write_text("NAME = 'email'\n")
    result = _run(str(tmp_path), "--aws-services", "s3", "--no-check")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in package.rglob("*.py")) == ["py2_only.py"]  # cannot compile
    assert not list(tmp_path.rglob("__pycache__"))
    assert (package / "sub" / "mod.pyc").is_file() and (tmp_path / "single.pyc").is_file()
    assert (kept / "email.py").is_file()  # --keep-sources (apprise by default)
    assert "sources of apprise" in result.stdout
    code = (
        "import single, somepkg, traceback\n"
        "assert somepkg.VALUE == 42 and single.X == 1\n"
        "try:\n    somepkg.fail()\n"
        "except ValueError:\n    print(traceback.format_exc())\n"
    )
    check = subprocess.run(
        [sys.executable, "-B", "-c", code],
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    assert f'File "{package / "sub" / "mod.py"}", line 2, in fail' in check.stdout


def test_translation_catalogs_go(tmp_path):
    (tmp_path / "botocore" / "data" / "s3").mkdir(parents=True)
    i18n = tmp_path / "apprise" / "i18n" / "de" / "LC_MESSAGES"
    i18n.mkdir(parents=True)
    for name in ("apprise.mo", "apprise.po"):
        (i18n / name).write_bytes(b"x" * 100)
    (tmp_path / "apprise" / "i18n" / "apprise.pot").write_text("x")
    result = _run(str(tmp_path), "--aws-services", "s3", "--no-check")
    assert result.returncode == 0, result.stderr
    assert not [p for p in (tmp_path / "apprise").rglob("*") if p.is_file()]
