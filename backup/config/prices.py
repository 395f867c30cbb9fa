"""STORAGE_PRICE_PER_GB_MONTH: the price ``list`` estimates each destination's monthly cost at.

Either one number for every destination (``0.006``), or prices keyed by the destination's
scheme: ``gs=0.020,az=0.018,s3=0.023,b2=0.006,file=0,default=0.006``. The scheme, because the
price is the provider's: every ``gs://`` bucket of a job bills at Google's rate, every ``s3://``
one at its store's; a key per destination URL would repeat the URL (and its commas and ``=``)
in a second variable. ``az`` and ``azure`` are one backend and one key. A scheme not named takes
``default``; with no ``default``, it has no estimate. ``0``: no estimate for that scheme.
"""

from __future__ import annotations

import math

from backup.config import syntax
from backup.config.model import B2_PRICE_PER_GB_MONTH, MAX_PRICE_PER_GB_MONTH
from backup.config.reader import NUMBER, Reader

NAME = "STORAGE_PRICE_PER_GB_MONTH"
KEYS = ("b2", "s3", "gs", "az", "file", "default")
ALIASES = {"azure": "az"}
USAGE = (
    "one number for every destination (0.006), or scheme=price pairs: "
    "gs=0.020,az=0.018,s3=0.023,b2=0.006,file=0,default=0.006"
)


def read_prices(r: Reader) -> tuple[float, tuple[tuple[str, float], ...]]:
    """``(default price, ((scheme, price), ...))``; a plain number is the default alone. Each
    problem names the variable; on one, B2's price for every destination."""
    raw = r.str("STORAGE_PRICE_PER_GB_MONTH")
    if raw is None:
        return B2_PRICE_PER_GB_MONTH, ()
    if "=" not in raw:
        price = r.float(
            "STORAGE_PRICE_PER_GB_MONTH", B2_PRICE_PER_GB_MONTH, 0.0, MAX_PRICE_PER_GB_MONTH
        )
        return price, ()
    prices: dict[str, float] = {}
    problems: list[str] = []
    for pair in raw.split(","):
        key, sep, value = (part.strip() for part in pair.partition("="))
        scheme = ALIASES.get(key.lower(), key.lower())
        if not sep or not key:
            problems.append(f"{syntax.shown(pair.strip())} is not scheme=price")
        elif scheme not in KEYS:
            problems.append(f"{syntax.shown(key)} is not a destination scheme ({', '.join(KEYS)})")
        elif scheme in prices:
            problems.append(f"{syntax.shown(key)} is named twice")
        else:
            price = _price(value)
            if price is None:
                problems.append(
                    f"{key}={syntax.shown(value)} is not a price between 0 and "
                    f"{MAX_PRICE_PER_GB_MONTH:g} (US$ per GB-month)"
                )
            else:
                prices[scheme] = price
    if problems:
        r.problems.append(f"{NAME}: " + "; ".join(problems))
        r.hints.append(f"{NAME}: {USAGE}")
        return B2_PRICE_PER_GB_MONTH, ()
    default = prices.pop("default", 0.0)
    return default, tuple(sorted(prices.items()))


def _price(value: str) -> float | None:
    if not NUMBER.fullmatch(value):
        return None
    number = float(value)
    if math.isnan(number) or not 0.0 <= number <= MAX_PRICE_PER_GB_MONTH:
        return None
    return number
