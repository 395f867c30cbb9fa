"""The words of every message people read, one module per language (``en.py``, ``fr.py``).

A language module holds ``WORDS`` (a flat mapping of message keys to ``str.format`` templates,
each a whole line with its icon and its punctuation, so a language keeps its own typography),
``PLURALS`` (the CLDR plural categories the language uses: ``("one", "other")`` in English and
French, ``("one", "few", "many", "other")`` in Polish), ``plural(n)`` (the category that counts
``n``: which of ``<key>.one`` / ``<key>.few`` / ... is used) and ``ordinal(n)`` (``2nd``, ``2e``).
``en`` is the reference: every other language has exactly its messages, each counted word in
every category of its own ``PLURALS`` and nothing else, and in each template the same
placeholders (``tests/unit/test_messages.py``), so a third language is one more file here,
whatever its plural rules, found by ``AVAILABLE`` without another change.

Only notifications are translated: log lines, errors and hints quoted from the job, and
healthchecks' summary line stay English. Pure data, no I/O; ``config`` reads ``AVAILABLE`` to
check NOTIFY_LANGUAGE, ``notify/message.py`` fills the templates.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT = "en"
# CLDR's plural categories (https://cldr.unicode.org/index/cldr-spec/plural-rules): a counted
# word's key ends with one of them (``days.one``, ``days.other``).
CATEGORIES: tuple[str, ...] = ("zero", "one", "two", "few", "many", "other")
AVAILABLE: tuple[str, ...] = tuple(
    sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
)


@dataclass(frozen=True)
class Language:
    code: str
    words: Mapping[str, str]
    plural: Callable[[int], str]
    ordinal: Callable[[int], str]
    plurals: tuple[str, ...] = ("one", "other")

    def text(self, key: str, **values: object) -> str:
        """The template ``key`` filled with ``values`` (already escaped by the caller)."""
        return self.words[key].format(**values)

    def count(self, key: str, n: int) -> str:
        """``3 days`` / ``3 jours``: ``<key>.<category>``, the category ``plural(n)`` says."""
        return self.words[f"{key}.{self.plural(n)}"].format(n=n)

    def messages(self) -> dict[str, set[str]]:
        """Each message of the language, a counted word once (``days``), with the categories it
        is written in (an empty set for a message that is not counted)."""
        found: dict[str, set[str]] = {}
        for key in self.words:
            stem, _, last = key.rpartition(".")
            if stem and last in CATEGORIES:
                found.setdefault(stem, set()).add(last)
            else:
                found.setdefault(key, set())
        return found


@functools.cache
def language(code: str) -> Language:
    """The language ``code`` (one of ``AVAILABLE``); an unknown code is a ``KeyError``."""
    if code not in AVAILABLE:
        raise KeyError(code)
    module = importlib.import_module(f"{__name__}.{code}")
    return from_module(code, module)


def from_module(code: str, module: Any) -> Language:
    """The ``Language`` a language module describes (``WORDS``, ``plural``, ``ordinal`` and
    ``PLURALS``, which defaults to English's ``("one", "other")``)."""
    plurals = tuple(getattr(module, "PLURALS", ("one", "other")))
    unknown = set(plurals) - set(CATEGORIES)
    if unknown or "other" not in plurals:
        raise ValueError(f"{code}: PLURALS must be CLDR categories including 'other': {plurals}")
    return Language(
        code,
        module.WORDS,
        module.plural,
        module.ordinal,
        plurals,
    )


def listed() -> str:
    """The available languages for help texts: ``en or fr``, ``de, en or fr``."""
    codes = list(AVAILABLE)
    return codes[0] if len(codes) == 1 else f"{', '.join(codes[:-1])} or {codes[-1]}"
