"""The results table: one row per (refiner, backend), as text for the terminal, CSV and JSON.

Per row: SA %, PC % and joint % (VideoPhy-2: the share of videos scoring at least 4; joint, both at least
4) with bootstrap 95% intervals; the paired difference to `original` on the same prompts and seeds; the
refiner's parse rate and budget figures; failed renders; and what each stage cost per video, read from
the cache records (the time it took when it was made, so a cached re-run still reports the real cost).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

from ..judges.base import JOINT_THRESHOLD
from ..language.metrics import parse_rate
from ..refiners.base import Refinement
from .runner import Sample
from .specs import ORIGINAL
from .statistics import DEFAULT_RESAMPLES, Estimate, paired_difference, per_prompt, rate

METRICS = ("sa", "pc", "joint")
_REFINEMENT_FIELDS = {f.name for f in fields(Refinement)}


@dataclass(frozen=True)
class Row:
    refiner: str
    backend: str
    prompts: int  # captions with at least one scored video
    videos: int  # scored videos
    failed_renders: int
    sa: Estimate
    pc: Estimate
    joint: Estimate
    # the paired difference to the original prompts, in percentage points (None for the original's own row)
    d_sa: Estimate | None
    d_pc: Estimate | None
    d_joint: Estimate | None
    paired_prompts: int
    parse_rate: float | None  # usable answers / answers (see metrics.parse_rate); None for the original
    fallbacks: int  # answers that fell back to the original prompt
    failures: dict  # why answers were not usable -> count
    mean_tokens: float  # of the prompts the video model got, in its text encoder's tokens
    token_limit: int | None
    over_budget: int  # prompts longer than the text encoder reads (it truncates them)
    refine_s: float  # seconds per prompt to refine (0 for the original)
    render_s: float  # seconds per video to render
    judge_s: float  # seconds per video to judge

    def flat(self) -> dict:
        """One level of columns, for CSV: each estimate as value, low, high."""
        out = {}
        for name, value in asdict(self).items():
            if isinstance(getattr(self, name), Estimate) or (value is None and name.startswith("d_")):
                for part in ("value", "low", "high"):
                    out[f"{name}_{part}" if part != "value" else name] = None if value is None else value[part]
            elif name == "failures":
                out[name] = "; ".join(f"{reason}: {count}" for reason, count in value.items())
            else:
                out[name] = value
        return out


def build_rows(samples: Sequence[Sample], counters: dict, limits: dict[str, int],
               resamples: int = DEFAULT_RESAMPLES) -> list[Row]:
    """The table, refiners and backends in their order of first appearance. `counters` and `limits` are
    each backend's token counter (its text encoder's tokenizer) and the tokens its loaded model reads
    (`Evaluation.token_limits`), by backend label; a backend without a known limit gets no budget figures."""
    order = list(dict.fromkeys((s.refiner, s.backend) for s in samples))
    groups = {pair: [s for s in samples if (s.refiner, s.backend) == pair] for pair in order}
    values = {pair: _values(group) for pair, group in groups.items()}
    rows = []
    for (refiner, backend), group in groups.items():
        mine, base = values[refiner, backend], values.get((ORIGINAL, backend))
        estimates = {m: rate(list(per_prompt(mine[m]).values()), resamples) for m in METRICS}
        differences, paired = {}, 0
        for m in METRICS:
            if refiner == ORIGINAL or base is None:
                differences[m] = None
                continue
            shared = {k: v for k, v in mine[m].items() if k in base[m]}
            control = {k: v for k, v in base[m].items() if k in mine[m]}
            differences[m], paired = paired_difference(per_prompt(shared), per_prompt(control), resamples)
        refinements = list({s.caption: s.refinement for s in group if s.refinement}.values())
        prompts = {s.caption: s.prompt for s in group}
        tokens = [counters[backend].count(p) for p in prompts.values()]
        limit = limits.get(backend)
        scored = [s for s in group if s.score]
        rows.append(Row(
            refiner=refiner, backend=backend, prompts=len({s.caption for s in scored}), videos=len(scored),
            failed_renders=sum(s.render_error is not None for s in group),
            sa=estimates["sa"], pc=estimates["pc"], joint=estimates["joint"],
            d_sa=differences["sa"], d_pc=differences["pc"], d_joint=differences["joint"], paired_prompts=paired,
            **_refinement_figures(refinements),
            mean_tokens=sum(tokens) / len(tokens) if tokens else 0.0, token_limit=limit,
            over_budget=sum(t > limit for t in tokens) if limit else 0,
            refine_s=_mean(r.get("seconds") for r in refinements),
            render_s=_mean({s.video: s.render_seconds for s in group}.values()),
            judge_s=_mean(s.score.get("seconds") for s in scored),
        ))
    return rows


def _values(group: Sequence[Sample]) -> dict[str, dict[tuple[str, int], float]]:
    """Per metric, {(caption, seed): 0 or 1} over the scored videos."""
    out = {m: {} for m in METRICS}
    for s in group:
        if s.score:
            sa, pc = s.score["sa"]["score"], s.score["pc"]["score"]
            point = (s.caption, s.seed)
            out["sa"][point] = float(sa >= JOINT_THRESHOLD)
            out["pc"][point] = float(pc >= JOINT_THRESHOLD)
            out["joint"][point] = float(sa >= JOINT_THRESHOLD and pc >= JOINT_THRESHOLD)
    return out


def _refinement_figures(records: list[dict]) -> dict:
    if not records:
        return {"parse_rate": None, "fallbacks": 0, "failures": {}}
    refinements = [as_refinement(r) for r in records]
    figures = parse_rate(refinements)
    return {"parse_rate": figures.rate, "fallbacks": sum(not r.ok for r in refinements),
            "failures": figures.failures}


def as_refinement(record: dict) -> Refinement:
    """A cached Refinement.to_dict() record as a Refinement again (lists back to tuples)."""
    values = {k: v for k, v in record.items() if k in _REFINEMENT_FIELDS}
    return Refinement(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _mean(values) -> float:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else 0.0


# ---------------------------------------------------------------------------------------- formats

def to_text(rows: Sequence[Row]) -> str:
    """The table for a terminal: results only, so the same scores always print the same table (what each
    stage cost is in `to_costs`, the CSV and the JSON)."""
    header = ["refiner", "backend", "n", "SA %", "PC %", "joint %", "Δ joint pp", "parse", "tokens", "failed"]
    lines = [header]
    for r in rows:
        parse = "—" if r.parse_rate is None else f"{100 * r.parse_rate:.0f}%"
        tokens = f"{r.mean_tokens:.0f}/{r.token_limit}" if r.token_limit else f"{r.mean_tokens:.0f}"
        lines.append([r.refiner, r.backend, str(r.videos), str(r.sa), str(r.pc), str(r.joint),
                      "—" if r.d_joint is None else _signed(r.d_joint), parse, tokens, str(r.failed_renders)])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(text)


def to_costs(rows: Sequence[Row], timings: dict[str, dict[str, float]]) -> str:
    """What a video cost to make (from the cache records, so also for cached results) and this run's wall
    time per stage."""
    lines = [f"{r.refiner} on {r.backend}: {r.refine_s:.2f} s/prompt to refine, {r.render_s:.2f} s/video to "
             f"render, {r.judge_s:.2f} s/video to judge" for r in rows]
    spent = {stage: sum(seconds.values()) for stage, seconds in timings.items()}
    lines.append("this run: " + ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in spent.items()))
    return "\n".join(lines)


def _signed(estimate: Estimate) -> str:
    return f"{estimate.value:+.1f} [{estimate.low:+.1f}, {estimate.high:+.1f}]"


def to_csv(rows: Sequence[Row]) -> str:
    flat = [row.flat() for row in rows]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(flat[0]) if flat else [], lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _cell(v) for k, v in row.items()} for row in flat)
    return out.getvalue()


def _cell(value):
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else value


def to_json(rows: Sequence[Row], run: dict) -> str:
    """The rows (estimates as {value, low, high}) and `run`: what was evaluated, how, and how long it took."""
    return json.dumps({"run": run, "rows": [_jsonable(asdict(row)) for row in rows]}, ensure_ascii=False,
                      indent=2) + "\n"


def _jsonable(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value

