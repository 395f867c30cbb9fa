"""The words of every message people read, one module per language (``en.py``, ``fr.py``).

A language module holds ``WORDS`` (a flat mapping of message keys to ``str.format`` templates,
each a whole line with its icon and its punctuation, so a language keeps its own typography),
``plural(n)`` (``"one"`` or ``"other"``: which of ``<key>.one`` / ``<key>.other`` counts ``n``)
and ``ordinal(n)`` (``2nd``, ``2e``). ``en`` is the reference: every other language has exactly
its keys and, in each template, the same placeholders (``tests/unit/test_messages.py``), so a
third language is one more file here, found by ``AVAILABLE`` without another change.

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

DEFAULT = "en"
AVAILABLE: tuple[str, ...] = tuple(
    sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
)


@dataclass(frozen=True)
class Language:
    code: str
    words: Mapping[str, str]
    plural: Callable[[int], str]
    ordinal: Callable[[int], str]

    def text(self, key: str, **values: object) -> str:
        """The template ``key`` filled with ``values`` (already escaped by the caller)."""
        return self.words[key].format(**values)

    def count(self, key: str, n: int) -> str:
        """``3 days`` / ``3 jours``: ``<key>.one`` or ``<key>.other`` as ``plural(n)`` says."""
        return self.words[f"{key}.{self.plural(n)}"].format(n=n)


@functools.cache
def language(code: str) -> Language:
    """The language ``code`` (one of ``AVAILABLE``); an unknown code is a ``KeyError``."""
    if code not in AVAILABLE:
        raise KeyError(code)
    module = importlib.import_module(f"{__name__}.{code}")
    return Language(code, module.WORDS, module.plural, module.ordinal)
