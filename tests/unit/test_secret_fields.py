"""Every ``Secret`` of the configuration reaches the log redaction: the test walks the dataclasses
of the ``Config`` tree (recursively, by their type hints), puts a distinct value in every field
typed ``Secret`` (or a tuple or list of them) and proves ``Config.secrets()`` returns each, so a
new secret field cannot be forgotten."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from backup.config import Config, Secret, load

# A few secrets the walk must find, so a walk that finds nothing cannot pass.
KNOWN = {
    "postgres.password",
    "storage.s3.secret_access_key",
    "storage.b2.application_key",
    "storage.azure.sas_token",
    "storage.gcs.credentials_json",
    "codec.age_passphrase",
    "notify.webhook_urls",
    "notify.apprise_urls",
    "dump.dedup_key",
    "verify_database_url",
}


def _secret_shape(hint: Any) -> str | None:
    """``one`` for ``Secret`` (or ``Secret | None``), ``many`` for a tuple or list of them."""
    if hint is Secret:
        return "one"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        kept = [a for a in args if a is not type(None)]
        return "one" if kept == [Secret] else None
    if origin in (tuple, list) and args and args[0] is Secret:
        return "many"
    return None


def _dataclass_types(hint: Any) -> list[type]:
    """The dataclasses a type hint names (directly, in a union, or as items)."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return [hint]
    return [found for arg in typing.get_args(hint) for found in _dataclass_types(arg)]


def _filled(node: Any, path: str, secrets: dict[str, list[str]], seen: set[type]) -> Any:
    """``node`` with a distinct value in every Secret field, walked down its dataclasses."""
    seen.add(type(node))
    hints = typing.get_type_hints(type(node))
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(node):
        where = f"{path}{field.name}"
        hint = hints[field.name]
        shape = _secret_shape(hint)
        value = getattr(node, field.name)
        if shape == "one":
            secrets[where] = [f"secret-value-of-{where}"]
        elif shape == "many":
            secrets[where] = [f"secret-value-of-{where}-{i}" for i in range(2)]
        elif dataclasses.is_dataclass(value):
            changes[field.name] = _filled(value, f"{where}.", secrets, seen)
            continue
        else:
            assert "Secret" not in repr(hint), f"{where}: a secret in a shape this test misses"
            continue
        made = [Secret(s) for s in secrets[where]]
        changes[field.name] = made[0] if shape == "one" else type(value)(made)
    return dataclasses.replace(node, **changes)


def _reachable(cls: type, found: set[type]) -> set[type]:
    """Every dataclass the type hints of ``cls`` reach."""
    found.add(cls)
    for hint in typing.get_type_hints(cls).values():
        for sub in _dataclass_types(hint):
            if sub not in found:
                _reachable(sub, found)
    return found


def test_every_secret_field_of_the_config_tree_is_redacted():
    secrets: dict[str, list[str]] = {}
    seen: set[type] = set()
    config = _filled(load({"BACKUP_DATABASES": "app"}), "", secrets, seen)
    assert seen == _reachable(Config, set()), "a dataclass of the tree was not walked"
    assert set(secrets) >= KNOWN
    redacted = set(config.secrets())
    missing = [where for where, values in secrets.items() if not set(values) <= redacted]
    assert not missing, f"Secret fields Config.secrets() does not return: {missing}"


def test_a_new_secret_field_is_found_by_the_walk():
    @dataclasses.dataclass(frozen=True)
    class Inner:
        token: Secret | None = None
        tokens: tuple[Secret, ...] = ()
        name: str = ""

    @dataclasses.dataclass(frozen=True)
    class Outer:
        inner: Inner = dataclasses.field(default_factory=Inner)

    globals()["Inner"] = Inner  # get_type_hints resolves the annotations in this module
    try:
        secrets: dict[str, list[str]] = {}
        _filled(Outer(), "", secrets, set())
    finally:
        del globals()["Inner"]
    assert set(secrets) == {"inner.token", "inner.tokens"}
