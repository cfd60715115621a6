"""The HTML report: the table, the charts, and a few side-by-side videos (original prompt | refined prompt,
same seed) with their scores, so researchers look before they read.

Examples are the captions where refining changed the scores most (|Δ(SA + PC)|, then file order), per
refiner and backend; each pair is put side by side with the one video writer's `side_by_side` and written
as mp4 next to the report.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from ..infra.files import write_text_atomic
from .runner import Sample
from .specs import ORIGINAL, file_name
from .tables import Row, to_text

DEFAULT_EXAMPLES = 3


def write_report(path: str | Path, rows: Sequence[Row], samples: Sequence[Sample], charts: Sequence[Path],
                 run: dict, examples: int = DEFAULT_EXAMPLES) -> Path:
    path = Path(path)
    parts = [f"<!doctype html><meta charset='utf-8'><title>PhyPrompt evaluation</title>{_STYLE}",
             "<h1>PhyPrompt evaluation on VideoPhy-2 criteria</h1>", _summary(run),
             "<h2>Results</h2><p>SA, PC, joint: % of videos the judge scored at least 4 (joint: both), with "
             "bootstrap 95% intervals over prompts; Δ: paired difference to the original prompts (same prompts "
             "and seeds), in percentage points.</p>",
             f"<pre>{html.escape(to_text(rows))}</pre>"]
    parts += [f"<img src='{html.escape(chart.name)}' alt='{html.escape(chart.stem)}'>" for chart in charts]
    pairs = _examples(path.parent / "videos", samples, examples)
    if pairs:
        parts.append("<h2>Examples: original prompt (left) and refined prompt (right), same seed</h2>")
        parts += pairs
    return write_text_atomic(path, "\n".join(parts) + "\n")


def _summary(run: dict) -> str:
    items = [f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in run.items()
             if not isinstance(v, dict)]
    return "<ul>" + "".join(items) + "</ul>"


def _examples(folder: Path, samples: Sequence[Sample], count: int) -> list[str]:
    from ..video.writer import read_video, side_by_side, write_video

    first_seed = {}
    for s in samples:
        first_seed.setdefault((s.refiner, s.backend, s.caption), s)
    originals = {(s.backend, s.caption): s for (refiner, _, _), s in first_seed.items() if refiner == ORIGINAL}
    by_pair: dict[tuple[str, str], list[tuple[Sample, Sample]]] = {}
    for (refiner, backend, caption), refined in first_seed.items():
        original = originals.get((backend, caption))
        if refiner != ORIGINAL and original and original.score and refined.score:
            by_pair.setdefault((refiner, backend), []).append((original, refined))
    html_parts = []
    for (refiner, backend), pairs in by_pair.items():
        pairs.sort(key=lambda pair: -abs(_total(pair[1]) - _total(pair[0])))  # stable: file order on ties
        html_parts.append(f"<h3>{html.escape(refiner)} on {html.escape(backend)}</h3>")
        for number, (original, refined) in enumerate(pairs[:count], 1):
            left, fps = read_video(original.video_path)
            right, _ = read_video(refined.video_path)
            name = f"{file_name(refiner)}-{file_name(backend)}-{number}.mp4"
            write_video(side_by_side(left, right), fps, folder / name)
            html_parts.append(
                f"<figure><video src='videos/{name}' controls loop muted autoplay playsinline></video><figcaption>"
                f"<b>caption</b>: {html.escape(original.caption)}<br><b>original</b>: {_scores(original)}<br>"
                f"<b>refined</b>: {_scores(refined)} — {html.escape(refined.prompt)}</figcaption></figure>")
    return html_parts


def _total(sample: Sample) -> int:
    return sample.score["sa"]["score"] + sample.score["pc"]["score"]


def _scores(sample: Sample) -> str:
    sa, pc = sample.score["sa"]["score"], sample.score["pc"]["score"]
    return f"SA {sa}, PC {pc}, joint {'yes' if sample.score['joint'] else 'no'}"


_STYLE = ("<style>body{font-family:sans-serif;max-width:1100px;margin:auto}pre{background:#f6f6f6;padding:8px;"
          "overflow:auto}img{max-width:100%}video{max-width:100%}figure{margin:12px 0}</style>")
