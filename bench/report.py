"""Medians, ratios and the printed table of a benchmark run; nothing here is asserted."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import asdict

from ways import BY_NAME, Result

FIELDS = ("wall_s", "own_cpu_s", "tree_cpu_s", "tools_cpu_s", "peak_tree_rss_mib")
FIELDS_MAX = ("max_process_rss_mib",)


def row(result: Result) -> dict[str, float]:
    m = result.measurement
    return {
        **{k: v for k, v in asdict(m).items() if k != "exit_code"},
        "own_cpu_s": m.own_cpu_s,
        "stored_bytes": result.stored_bytes,
    }


def medians(rows: Iterable[dict[str, float]]) -> dict[str, float]:
    rows = list(rows)
    keys = [*FIELDS, *FIELDS_MAX, "stored_bytes"]
    return {k: statistics.median(r[k] for r in rows) for k in keys}


def ratios(median: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Wall-time ratios: backups against bare pg_dump and the floor, restores against bare
    pg_restore, ``--jobs 2`` against bare -j2 (and bare -j2 plus the download alone); a way
    with a ``baseline`` also against that bare way (the directory format: pg_dump -Fd -jN)."""
    wall = {name: m["wall_s"] for name, m in median.items()}
    out: dict[str, dict[str, float]] = {}
    for name in median:
        way, r = BY_NAME[name], {}
        if way.side == "backup" and name != "pg_dump":
            if "pg_dump" in wall:
                r["vs_pg_dump"] = wall[name] / wall["pg_dump"]
            if "floor" in wall and name != "floor":
                r["vs_floor"] = wall[name] / wall["floor"]
        elif name == "restore-s3-j2":
            if "pg_restore-j2" in wall:
                r["vs_pg_restore_j2"] = wall[name] / wall["pg_restore-j2"]
                if "s3-download" in wall:
                    base = wall["pg_restore-j2"] + wall["s3-download"]
                    r["vs_pg_restore_j2_plus_download"] = wall[name] / base
        elif (
            way.side == "restore"
            and name.startswith("restore-")
            and not way.baseline
            and "pg_restore" in wall
        ):
            r["vs_pg_restore"] = wall[name] / wall["pg_restore"]
        if way.baseline in wall:
            r["vs_baseline"] = wall[name] / wall[way.baseline]
        out[name] = r
    return out


RATIO_TEXT = {
    "vs_pg_dump": "dump",
    "vs_floor": "floor",
    "vs_pg_restore": "pg_restore",
    "vs_pg_restore_j2": "-j2",
    "vs_pg_restore_j2_plus_download": "-j2+dl",
}
BASELINE_TEXT = {"pg_dump-dir-j1": "-Fd -j1", "pg_dump-dir-j2": "-Fd -j2", "pg_restore-j2": "-j2"}


def ratio_text(name: str, key: str) -> str:
    if key == "vs_baseline":
        baseline = BY_NAME[name].baseline
        return BASELINE_TEXT.get(baseline, baseline)
    return RATIO_TEXT[key]


def table(median: dict[str, dict[str, float]], ratio: dict[str, dict[str, float]]) -> list[str]:
    header = (
        f"{'way':<42}{'wall s':>8}  {'ratios':<32}{'job CPU s':>10}{'tree CPU s':>11}"
        f"{'peak tree RSS MiB':>18}{'max proc MiB':>13}{'stored MB':>10}"
    )
    lines = [header, "-" * len(header)]
    for name, m in median.items():
        text = " ".join(f"{v:.2f}x {ratio_text(name, k)}" for k, v in ratio[name].items())
        stored = f"{m['stored_bytes'] / 1e6:.1f}" if m["stored_bytes"] else "-"
        lines.append(
            f"{BY_NAME[name].label:<42}{m['wall_s']:>8.2f}  {text:<32}{m['own_cpu_s']:>10.2f}"
            f"{m['tree_cpu_s']:>11.2f}{m['peak_tree_rss_mib']:>18.0f}"
            f"{m['max_process_rss_mib']:>13.0f}{stored:>10}"
        )
    return lines


def cpu_per_gb(median: dict[str, dict[str, float]], dump_bytes: int) -> dict[str, float]:
    """Own CPU seconds per GB of uncompressed dump: each backup way and ``zstd -3 -T1``."""
    gb = dump_bytes / 1e9
    return {
        name: m["own_cpu_s"] / gb
        for name, m in median.items()
        if (BY_NAME[name].side == "backup" and name != "pg_dump") or name == "zstd"
    }
