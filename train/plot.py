"""The training-curve PNG written at the end of a run."""

from __future__ import annotations

import os


def loss_points(log_history: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(entry["step"], entry[key]) for entry in log_history if key in entry and "step" in entry]
    return [s for s, _ in points], [v for _, v in points]


def plot_loss(log_history: list[dict], path: str | os.PathLike, title: str = "training loss") -> bool:
    """Plot train (and eval) loss against the step from a Trainer's `state.log_history`.

    Returns False, writing nothing, when no loss was logged (a run shorter than `logging_steps`)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt

    train_steps, train_loss = loss_points(log_history, "loss")
    eval_steps, eval_loss = loss_points(log_history, "eval_loss")
    if not train_steps and not eval_steps:
        return False
    figure, axes = plt.subplots(figsize=(6, 4), dpi=120)
    if train_steps:
        axes.plot(train_steps, train_loss, marker="o" if len(train_steps) < 30 else None, label="train loss")
    if eval_steps:
        axes.plot(eval_steps, eval_loss, marker="s", label="eval loss")
    axes.set_xlabel("step")
    axes.set_ylabel("cross-entropy on the answer")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True
