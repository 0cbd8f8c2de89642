"""Draw bench/results/latest.png from latest.json. Run by bench/run.py with the bench tools venv
(matplotlib): ``bench/.venvs/tools/bin/python bench/chart.py latest.json latest.png``."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import Patch

COLORS = {"seq": "#9e9e9e", "ours": "#1f77b4", "opponent": "#ff7f0e", "xdist": "#2ca02c"}
LABELS = {
    "seq": "sequential",
    "ours": "ours",
    "opponent": "pytest-threadpool 0.4.0 (PyPI)",
    "xdist": "pytest-xdist",
}


def speedup(runs: dict[str, list[dict]], config: str) -> float | None:
    """Median over rounds of sequential time / config time; None when a round failed."""
    pairs = list(zip(runs.get("seq", []), runs.get(config, []), strict=False))
    if not pairs or any(s["problem"] or c["problem"] for s, c in pairs):
        return None
    return statistics.median(s["seconds"] / c["seconds"] for s, c in pairs)


def peak_rss(runs: dict[str, list[dict]], config: str) -> float | None:
    """Median peak RSS over rounds; None when a round failed."""
    records = runs.get(config)
    if not records or any(r["problem"] for r in records):
        return None
    return statistics.median(r["rss_mib"] for r in records)


Grid = dict[tuple[str, str], float | None]  # (suite, config) -> bar height


def grouped_bars(ax, suite_names: list[str], configs: list[str], values: Grid, fmt: str) -> None:
    width = 0.8 / len(configs)
    for i, config in enumerate(configs):
        for j, suite in enumerate(suite_names):
            x = j + (i - (len(configs) - 1) / 2) * width
            value = values[suite, config]
            if value is None:
                ax.text(x, 0, "FAIL", rotation=90, ha="center", va="bottom", color="red")
                continue
            ax.bar(x, value, width, color=COLORS[config])
            ax.text(x, value, format(value, fmt), ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(range(len(suite_names)), suite_names, rotation=20)
    ax.margins(y=0.18)
    ax.grid(axis="y", alpha=0.3)


def draw(results: dict, out: Path) -> None:
    interps = results["interpreters"]
    configs = results["configs"]
    fig, axes = plt.subplots(len(interps), 2, figsize=(16, 5 * len(interps)), squeeze=False)
    parallel = [c for c in configs if c != "seq"]
    for (left, right), data in zip(axes, interps.values(), strict=True):
        runs = data["runs"]
        suite_names = list(runs)
        if "seq" in configs and parallel:
            speedups = {(s, c): speedup(runs[s], c) for s in suite_names for c in parallel}
            grouped_bars(left, suite_names, parallel, speedups, ".2f")
            left.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        py = data["info"]["ours"]["python"] + ("t" if data["info"]["ours"]["free_threaded"] else "")
        left.set_title(f"Python {py}: speedup over sequential pytest (higher is better)")
        left.set_ylabel("sequential time / time")
        rss = {(s, c): peak_rss(runs[s], c) for s in suite_names for c in configs}
        grouped_bars(right, suite_names, configs, rss, ".0f")
        right.set_title(f"Python {py}: peak RSS, MiB (lower is better)")
        right.set_ylabel("MiB")
    handles = [Patch(color=COLORS[c], label=LABELS[c]) for c in configs]
    inch = 1 / fig.get_figheight()  # one inch, in figure fractions
    title = f"pytest-threadpool benchmark ({results['rounds']} rounds, medians)"
    fig.suptitle(title, y=1 - 0.1 * inch, va="top")
    fig.legend(
        handles=handles, loc="upper center", ncol=len(handles), bbox_to_anchor=(0.5, 1 - 0.4 * inch)
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.8 * inch))
    fig.savefig(out, dpi=110)


def main(argv: list[str]) -> int:
    results = json.loads(Path(argv[0]).read_text())
    draw(results, Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
