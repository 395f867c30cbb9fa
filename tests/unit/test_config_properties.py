"""Property-based tests over every variable of the configuration table (issue 11),
docs/configuration.md.

The property: ``load(environ)`` returns a ``Config`` (a documented acceptance: a free-text value
such as a user name or a path) or raises ``ConfigError`` whose every problem names the variable;
never another exception, never a secret's value in the message, never more than a short message.
Inputs: random text (control characters, undecodable surrogates and NUL included), values of
5,000 and 100,000 characters, and for ``NAME_FILE``: random bytes, non-UTF-8 text, a FIFO,
``/dev/zero``, a directory, a file over 64 KiB. Wall-clock time is not asserted here (the guide
forbids it): ``bench/hostile_config.py`` measures it; the sizes above are the ones it reports.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backup.config import load
from backup.errors import ConfigError
from tests.fixtures.examples import examples
from tests.unit.test_readme_configuration import documented, read_by_code

# What the other variables are set to, so that a problem can only come from the one under test:
# B2 keys for a b2:// destination a random B2_BUCKET_NAME or BACKUP_DESTINATIONS may bring.
BASE = {"PGDATABASE": "shop", "B2_KEY_ID": "0012ab34cd56", "B2_APPLICATION_KEY": "K0012abcdef"}
VARIABLES = sorted(documented())
SECRETS = sorted(read_by_code()[1])
MAX_MESSAGE_CHARS = 600
MIN_SECRET_CHARS = 8  # shorter random secrets can occur in any message by chance ("at m")

any_character = st.characters(exclude_categories=())  # surrogates and NUL included
text = st.text(any_character, max_size=80)
url_like = st.builds(
    lambda scheme, rest: scheme + rest,
    st.sampled_from(["http://", "https://", "postgresql://", "s3://", "file://", "b2://"]),
    st.text(st.sampled_from("[]:@/%.?#-_ az09\n\té"), max_size=40),
)
huge = st.builds(
    lambda prefix, char, size: prefix + char * size,
    st.sampled_from(["", "http://", "postgresql://u:p@", "s3://bucket/", "1"]),
    any_character,
    st.sampled_from([5_000, 100_000]),
)
values = st.one_of(text, url_like, huge, st.sampled_from(["0", "-1", "1e9", "nan", " ", "all"]))


def check(name: str, env: dict[str, str], secret: str | None = None) -> None:
    try:
        load({**BASE, **env})
    except ConfigError as err:
        assert err.exit_code == 2
        assert err.problems, err
        for problem in err.problems:
            assert name in problem, (name, problem)
        assert len(err.message) <= MAX_MESSAGE_CHARS * len(err.problems), err.message[:200]
        if secret and len(secret.strip()) >= MIN_SECRET_CHARS:
            # A value that is part of the variable's own name ("BACKUP_D") is not a leak: the
            # message has to name the variable.
            assert secret.strip() not in err.message.replace(name, "")
            assert secret.strip() not in (err.hint or "").replace(name, "")


@pytest.mark.parametrize("name", VARIABLES)
@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=values)
def test_every_variable_is_refused_by_name_or_accepted(name: str, value: str) -> None:
    check(name, {name: value}, secret=value if name in SECRETS else None)


@pytest.fixture(scope="module")
def special_files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("special")
    fifo = root / "fifo"
    os.mkfifo(fifo)
    (root / "latin1").write_bytes(b"p\xe4ssword\xff")
    (root / "huge").write_bytes(b"x" * (64 * 1024 + 1))
    (root / "empty").write_bytes(b"")
    names = ("latin1", "huge", "empty", "missing")
    return [str(fifo), "/dev/zero", "/dev/null", str(root), *(str(root / n) for n in names)]


@pytest.mark.parametrize("name", SECRETS)
@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(content=st.binary(max_size=300), index=st.integers(0, 7), special=st.booleans())
def test_every_secret_file_is_refused_by_name_or_accepted(
    name: str, content: bytes, index: int, special: bool, special_files: list[str], tmp_path: Path
) -> None:
    if special:
        path = special_files[index]
    else:
        path = str(tmp_path / "secret")
        Path(path).write_bytes(content)
    secret = content.decode("utf-8", "replace") if not special else None
    check(name, {f"{name}_FILE": path}, secret=secret)


@settings(max_examples=examples(300), deadline=None)
@given(env=st.dictionaries(st.sampled_from(VARIABLES), values, min_size=2, max_size=8))
def test_several_bad_values_are_all_reported_each_by_name(env: dict[str, str]) -> None:
    try:
        load({**BASE, **env})
    except ConfigError as err:
        names = (*env, "B2_KEY_ID", "B2_APPLICATION_KEY", "PGDATABASE")
        for problem in err.problems:
            assert any(name in problem for name in names), problem
        shown = [value for name, value in env.items() if name not in SECRETS]
        for name in SECRETS:
            value = env.get(name, "").strip()
            if len(value) >= MIN_SECRET_CHARS and not any(value in v for v in shown):
                # The words of another problem may happen to be the value ("https://" in "must
                # start with http:// or https://"): a leak is the value shown because it is set.
                assert value not in err.message or value in _message_without(env, name)


def _message_without(env: dict[str, str], name: str) -> str:
    try:
        load({**BASE, **{k: v for k, v in env.items() if k != name}})
    except ConfigError as err:
        return err.message
    return ""
