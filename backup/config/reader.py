"""The ``Reader``: one variable at a time, typed and bounded, every problem collected.

Each method reads one variable (``str``, ``secret`` with its ``NAME_FILE``, ``int``, ``float``,
``duration``, ``choice``, ``bool``, ``csv``) and records a problem naming it instead of raising,
so ``environment.parse`` reports them all at once. Every name asked for is recorded: the
registry of the variables the job reads (``environment.known_variables``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping

from backup.config import files, syntax
from backup.config.model import Secret
from backup.config.syntax import MAX_SECRET_CHARS, MAX_VALUE_CHARS

DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")
NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
MAX_INT = 100_000


class Reader:
    """Reads variables and collects every problem instead of stopping at the first.

    Every name asked for is recorded in ``names`` (secrets with their ``_FILE`` variant): the
    registry of known variables that ``unknown_variables`` compares the environment with.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.env = environ
        self.problems: list[str] = []
        self.hints: list[str] = []
        """Specific hints of the problems that have one (a destination's URL form, ...)."""
        self.names: set[str] = set()

    def raw(self, name: str, max_chars: int = MAX_VALUE_CHARS) -> str | None:
        """The stripped value, or ``None`` when unset, empty, too long or not plain text."""
        self.names.add(name)
        value = self.env.get(name, "")
        if len(value) > max_chars:
            self.problems.append(f"{name} is {len(value)} characters long: at most {max_chars}")
            return None
        value = value.strip()
        problem = syntax.character_problem(value)
        if problem:
            self.problems.append(f"{name} {problem}")
            return None
        return value or None

    def str(
        self, name: str, default: str | None = None, max_chars: int = MAX_VALUE_CHARS
    ) -> str | None:
        value = self.raw(name, max_chars)
        return value or default

    def secret(self, name: str) -> Secret | None:
        """``NAME`` or the contents of the file named by ``NAME_FILE`` (not both)."""
        self.names.update((name, f"{name}_FILE"))
        direct = self.env.get(name, "")
        path = self.raw(f"{name}_FILE")
        if direct and path:
            self.problems.append(f"{name} and {name}_FILE are both set: keep one")
            return None
        if path:
            try:
                value = files.read_small_text(path).strip()
            except files.FileProblem as err:
                self.problems.append(f"{name}_FILE: {err}")
                return None
            if not value:
                self.problems.append(f"{name}_FILE: {path} is empty")
                return None
            return self._checked_secret(f"{name}_FILE", value)
        if len(direct) > MAX_SECRET_CHARS:
            self.problems.append(
                f"{name} is {len(direct)} characters long: at most {MAX_SECRET_CHARS}"
            )
            return None
        direct = direct.strip()
        return self._checked_secret(name, direct) if direct else None

    def _checked_secret(self, name: str, value: str) -> Secret | None:
        # A secret may span lines (an identity file); other control characters are refused.
        problem = syntax.character_problem(value.replace("\n", "").replace("\r", ""))
        if problem:
            self.problems.append(f"{name} {problem}")
            return None
        return Secret(value)

    def int(
        self, name: str, default: int | None, minimum: int = 0, maximum: int = MAX_INT
    ) -> int | None:
        raw = self.str(name)
        if raw is None:
            return default
        if not WHOLE_NUMBER.fullmatch(raw):
            self.problems.append(f"{name}={syntax.shown(raw)} is not a whole number")
            return default
        value = int(raw)
        if value < minimum or value > maximum:
            self.problems.append(f"{name}={raw} must be between {minimum} and {maximum}")
            return default
        return value

    def float(self, name: str, default: float, minimum: float, maximum: float) -> float:
        raw = self.str(name)
        if raw is None:
            return default
        try:
            value = float(raw) if NUMBER.fullmatch(raw) else math.nan
        except ValueError:
            value = math.nan
        if math.isnan(value):
            self.problems.append(f"{name}={syntax.shown(raw)} is not a number")
            return default
        if not minimum <= value <= maximum:
            self.problems.append(
                f"{name}={syntax.shown(raw)} must be between {minimum:g} and {maximum:g}"
            )
            return default
        return value

    def duration(self, name: str, default_s: float, minimum_s: float, maximum_s: float) -> float:
        """Seconds: a plain number of seconds, or a number with ``s``, ``m`` or ``h``."""
        raw = self.str(name)
        if raw is None:
            return default_s
        text = raw.lower().replace(" ", "")
        unit = 1.0
        if text and text[-1] in DURATION_UNITS:
            unit, text = DURATION_UNITS[text[-1]], text[:-1]
        if not NUMBER.fullmatch(text):
            self.problems.append(
                f"{name}={syntax.shown(raw)} is not a duration (e.g. 90s, 30m, 6h)"
            )
            return default_s
        value = float(text) * unit
        if not minimum_s <= value <= maximum_s:
            self.problems.append(
                f"{name}={syntax.shown(raw)} must be between {minimum_s:g} and "
                f"{maximum_s:g} seconds"
            )
            return default_s
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        raw = self.str(name)
        if raw is None:
            return default
        value = raw.lower()
        if value not in choices:
            self.problems.append(f"{name}={syntax.shown(raw)} must be one of: {', '.join(choices)}")
            return default
        return value

    def bool(self, name: str, default: bool = False) -> bool:
        raw = self.str(name)
        if raw is None:
            return default
        value = raw.lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        self.problems.append(f"{name}={syntax.shown(raw)} must be true or false")
        return default

    def csv(self, name: str, max_chars: int = MAX_VALUE_CHARS) -> tuple[str, ...]:
        raw = self.str(name, max_chars=max_chars) or ""
        return tuple(item.strip() for item in raw.split(",") if item.strip())

    def check(self, name: str, value: str | None, rule: Callable[[str], str | None]) -> str | None:
        """``value`` if ``rule`` finds no problem in it, else ``None`` (the problem recorded)."""
        if value is None:
            return None
        problem = rule(value)
        if problem:
            self.problems.append(f"{name} {problem}")
            return None
        return value
