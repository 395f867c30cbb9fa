"""The metrics files (METRICS_FILE and each command's file next to it): written atomically,
and the verify series a command's file already holds read back (their memory across runs)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Collection

log = logging.getLogger(__name__)


def held_verify_series(
    path: str, verify_names: Collection[str]
) -> dict[tuple[str, str, str], float]:
    """The verify series a command's file already holds: (name, database, destination) ->
    value. A missing file holds none; one that does not parse, none and a warning."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as err:
        log.warning("metrics: cannot read %s, the verify series start anew: %s", path, err)
        return {}
    held: dict[tuple[str, str, str], float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in verify_names:
                    key = (sample.name, sample.labels["database"], sample.labels["destination"])
                    held[key] = sample.value
    except (ValueError, KeyError) as err:
        log.warning("metrics: %s does not parse, the verify series start anew: %s", path, err)
        return {}
    return held


def write_texts(path: str, texts: list[str]) -> bool:
    """Write ``texts`` to ``path`` as one file, atomically (temporary file, then rename)."""
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temporary, "w", encoding="utf-8") as file:
            file.write("".join(texts))
        os.replace(temporary, path)
    except Exception as err:  # metrics must never fail the run
        log.warning("metrics: cannot write %s: %s", path, err)
        with contextlib.suppress(OSError):
            os.remove(temporary)
        return False
    log.info("metrics: written to %s", path)
    return True
