"""PNG charts of the results table: per backend, SA/PC/joint bars per refiner with their 95% intervals; and
the transfer chart, joint success per refiner across backends.

matplotlib is imported here only (`pip install matplotlib`): without it, the rest of an evaluation works
and the command says the charts were skipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from ..infra.files import atomic_path
from .specs import file_name
from .tables import METRICS, Row

_LABELS = {"sa": "SA", "pc": "PC", "joint": "joint"}


def write_charts(rows: Sequence[Row], folder: str | Path) -> list[Path]:
    """One `bars-<backend>.png` per backend, and `transfer.png` when there are several backends."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("charts need matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")  # files only, also on machines without a display
    folder = Path(folder)
    refiners = list(dict.fromkeys(r.refiner for r in rows))
    backends = list(dict.fromkeys(r.backend for r in rows))
    table = {(r.refiner, r.backend): r for r in rows}
    written = []
    for backend in backends:
        series = {refiner: [getattr(table[refiner, backend], m) for m in METRICS]
                  for refiner in refiners if (refiner, backend) in table}
        written.append(_grouped(series, [_LABELS[m] for m in METRICS], f"VideoPhy-2 on {backend}",
                                folder / f"bars-{file_name(backend)}.png"))
    if len(backends) > 1:
        series = {refiner: [table[refiner, b].joint if (refiner, b) in table else None for b in backends]
                  for refiner in refiners}
        written.append(_grouped(series, backends, "joint success across video models", folder / "transfer.png"))
    return written


def _grouped(series: dict, groups: list[str], title: str, path: Path) -> Path:
    """Bars for each series in each group, with the estimates' intervals as error bars."""
    import matplotlib.pyplot as plt

    width = 0.8 / max(len(series), 1)
    figure, axes = plt.subplots(figsize=(max(4.0, 1.2 * len(groups) * max(len(series), 1) * 0.6 + 2), 3.6))
    try:
        for i, (name, estimates) in enumerate(series.items()):
            xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
            values = [e.value if _finite(e) else 0.0 for e in estimates]
            errors = [[max(e.value - e.low, 0) if _finite(e) else 0 for e in estimates],
                      [max(e.high - e.value, 0) if _finite(e) else 0 for e in estimates]]
            bars = axes.bar(xs, values, width, yerr=errors, capsize=3, label=name)
            for bar, value in zip(bars, values):
                axes.annotate(f"{value:.1f}", (bar.get_x() + bar.get_width() / 2, value), ha="center",
                              va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
        axes.set_xticks(range(len(groups)), groups)
        axes.set_ylabel("% of videos (score ≥ 4), 95% CI")
        axes.set_ylim(0, 100)
        axes.set_title(title)
        axes.legend(fontsize=8, loc="upper right")
        figure.tight_layout()
        with atomic_path(path) as partial:
            figure.savefig(partial, format="png", dpi=120)
    finally:
        plt.close(figure)
    return path


def _finite(estimate) -> bool:
    return estimate is not None and math.isfinite(estimate.value)

