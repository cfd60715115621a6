"""The paper's ablation: the same GRPO recipe, data and seed trained with the curriculum and with each
baseline schedule, and their reward, SA and PC curves drawn into one PNG.

    python -m train.ablation --config train/recipes/smollm2-135m-grpo-cpu.yaml [--schedules exp sa_only pc_only static]
        [--out runs/ablation] [any train.grpo option …]

Each schedule trains in its own process (`python -m train.grpo`, so each is resumable on its own: run the
same command again after an interruption and finished schedules are not trained twice) into
`<out>/<schedule>`. `ablation.png` shows, per schedule, the weighted total reward and the two curriculum
rewards (unweighted: how semantic fidelity and physics really move).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from .curriculum import SCHEDULES
from .plot import loss_points, pyplot

DEFAULT_SCHEDULES = ("exp", "sa_only", "pc_only", "static")


def commands(recipe: str, schedules, out: str, extra: list[str]) -> dict[str, list[str]]:
    """The train.grpo command of each schedule."""
    return {schedule: [sys.executable, "-m", "train.grpo", "--config", recipe, *extra, "--curriculum", schedule,
                       "--output_dir", os.path.join(out, schedule)] for schedule in schedules}


def plot_ablation(histories: dict[str, list[dict]], sa: str, pc: str, path: str) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(13, 4), dpi=120)
    for schedule, history in histories.items():
        for ax, key in zip(axes, ("reward", f"rewards/{sa}/mean", f"rewards/{pc}/mean")):
            ax.plot(*loss_points(history, key), label=schedule)
    for ax, title in zip(axes, ("total reward (weighted)", f"SA reward ({sa})", f"PC reward ({pc})")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main(argv=None) -> int:
    from phyprompt.infra.console import fail, silence_known_warnings

    from .grpo import parse

    silence_known_warnings()  # its recipe check builds a GRPOConfig; the runs are train.grpo's own processes
    parser = argparse.ArgumentParser(prog="train.ablation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="a train.grpo recipe")
    parser.add_argument("--schedules", nargs="+", default=list(DEFAULT_SCHEDULES), choices=list(SCHEDULES))
    parser.add_argument("--out", default="runs/ablation")
    args, extra = parser.parse_known_args(argv)
    try:
        _, rewards, curriculum, *_ = parse(["--config", args.config, *extra])
    except ValueError as error:
        return fail(str(error), prog="train.ablation")
    histories = {}
    for schedule, command in commands(args.config, args.schedules, args.out, extra).items():
        state = os.path.join(args.out, schedule, "trainer_state.json")
        if not os.path.isfile(state):
            print(f"train.ablation: training {schedule}", file=sys.stderr)
            if subprocess.run(command).returncode != 0:
                return fail(f"the {schedule} run failed; run the same command again to resume it",
                            prog="train.ablation")
        with open(state, encoding="utf-8") as handle:
            histories[schedule] = json.load(handle)["log_history"]
    path = os.path.join(args.out, "ablation.png")
    plot_ablation(histories, curriculum.curriculum_sa, curriculum.curriculum_pc, path)
    print(f"train.ablation: wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
