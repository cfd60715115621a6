"""The training-curve PNGs written at the end of a run (loss for SFT, rewards for GRPO) and by the ablation."""

from __future__ import annotations

import os


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt

    return plt


def loss_points(log_history: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(entry["step"], entry[key]) for entry in log_history if key in entry and "step" in entry]
    return [s for s, _ in points], [v for _, v in points]


def plot_loss(log_history: list[dict], path: str | os.PathLike, title: str = "training loss") -> bool:
    """Plot train (and eval) loss against the step from a Trainer's `state.log_history`.

    Returns False, writing nothing, when no loss was logged (a run shorter than `logging_steps`)."""
    plt = pyplot()
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


def plot_rewards(log_history: list[dict], rewards: list[str], path: str | os.PathLike,
                 title: str = "GRPO rewards") -> bool:
    """The weighted total reward, each reward (unweighted, as trl logs them) and the curriculum's w_sa
    against the step. Returns False, writing nothing, when nothing was logged."""
    steps, total = loss_points(log_history, "reward")
    if not steps:
        return False
    plt = pyplot()
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), dpi=120, sharex=True,
                                         gridspec_kw={"height_ratios": [3, 1]})
    top.plot(steps, total, linewidth=2, label="total (weighted)")
    for name in rewards:
        top.plot(*loss_points(log_history, f"rewards/{name}/mean"), label=name, alpha=0.8)
    top.set_ylabel("mean reward")
    top.set_title(title)
    top.grid(alpha=0.3)
    top.legend(fontsize="small")
    bottom.plot(*loss_points(log_history, "curriculum/w_sa"), label="w_sa")
    bottom.plot(*loss_points(log_history, "curriculum/w_pc"), label="w_pc")
    bottom.set_xlabel("step")
    bottom.set_ylabel("weight")
    bottom.grid(alpha=0.3)
    bottom.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True
