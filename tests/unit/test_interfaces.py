"""The small interfaces of docs/architecture.md: every backend, notifier and command has every
member the code calls, and every registry entry leads to one."""

from __future__ import annotations

import importlib
import inspect

import pytest

from backup import commands, storage
from backup.cli import build_parser
from backup.config import SCHEMES, NotifyConfig, Secret
from backup.notify import FACTORIES, Delivery, build_notifiers
from backup.notify.base import Notifier
from backup.storage.base import Storage

STORAGE_MEMBERS = (
    "put",
    "open",
    "open_range",
    "list",
    "delete",
    "cleanup_incomplete",
    "from_destination",
)


def backend_class(scheme: str) -> type:
    module_name, _, class_name = storage.BACKENDS[scheme].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def test_every_accepted_scheme_has_a_backend() -> None:
    assert set(storage.BACKENDS) == set(SCHEMES)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_backend_has_every_member_of_the_protocol(scheme: str) -> None:
    cls = backend_class(scheme)
    protocol_members = {
        name for name in vars(Storage) if not name.startswith("_") and name != "url"
    }
    assert protocol_members == set(STORAGE_MEMBERS)
    for name in STORAGE_MEMBERS:
        member = getattr(cls, name, None)
        assert callable(member), f"{cls.__name__} lacks {name}"
        expected = list(inspect.signature(getattr(Storage, name)).parameters)
        actual = list(inspect.signature(member).parameters)
        assert actual[: len(expected)] == expected, f"{cls.__name__}.{name}{actual}"


def test_every_notifier_is_a_notifier_and_only_healthchecks_is_a_heartbeat() -> None:
    config = NotifyConfig(
        telegram_bot_token=Secret("123:abc"),
        telegram_chat_id="42",
        webhook_urls=(Secret("http://127.0.0.1:9/hook"),),
        healthcheck_url=Secret("http://127.0.0.1:9/ping/uuid"),
        apprise_urls=(Secret("json://127.0.0.1:9/hook"),),
    )
    notifiers = build_notifiers(config, Delivery(timeout_s=0.1, attempts=1))
    assert len(notifiers) == len(FACTORIES)
    for notifier in notifiers:
        assert Notifier in type(notifier).__mro__
        assert notifier.name and callable(notifier.start) and callable(notifier.send)
    assert [n.heartbeat for n in notifiers] == [False, False, True, False]


@pytest.mark.parametrize("name", commands.COMMANDS)
def test_every_command_has_help_arguments_and_a_run(name: str, capsys) -> None:
    module = commands.load(name)
    assert commands.HELP[name] and callable(module.configure) and callable(module.run)
    assert isinstance(module.NEEDS_DATABASES, bool)
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([name, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: pgbackup {name}")
    description = out.split("\n\n")[1]
    assert description.strip() and not description.startswith(("options:", "positional"))
