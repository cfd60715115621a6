"""The reward curriculum: how much of the reward is semantic fidelity (SA) and how much physical
commonsense (PC) at each training step.

R(t) = w_sa(t)·r_sa + w_pc(t)·r_pc with w_pc = 1 − w_sa. The paper's schedule is `exp`:
w_sa(t) = exp(−α·t/T) (T: the run's total steps), moving the reward from "keep what the user asked for" to
"make it physical". The other schedules are for ablations. Every weight is a pure function of the step, so
a resumed run weighs exactly as an uninterrupted one would.

`CurriculumCallback` applies it through trl's `trainer.reward_weights`, which GRPOTrainer reads each time it
scores a batch (so the weights take effect at generation boundaries), and logs `curriculum/w_sa` and
`curriculum/w_pc` at every logging step. Other rewards (format, budget) keep their recipe weights beside it.
"""

from __future__ import annotations

import math

from transformers import TrainerCallback

SCHEDULES = {
    "exp": "exp(−α·t/T): the paper's curriculum",
    "linear": "1 − t/T",
    "cosine": "(1 + cos(π·t/T)) / 2",
    "step": "1 until t/T reaches step_at, then 0",
    "static": "static_sa_weight throughout (0.5: the paper's static baseline)",
    "sa_only": "1: semantic fidelity only",
    "pc_only": "0: physical commonsense only",
}


def sa_weight(schedule: str, step: int, total: int, *, alpha: float = 3.0, static_sa_weight: float = 0.5,
              step_at: float = 0.5) -> float:
    """w_sa at `step` of `total` (w_pc is 1 − w_sa)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown curriculum {schedule!r}; choose one of: {', '.join(SCHEDULES)}")
    progress = min(max(step / total, 0.0), 1.0) if total > 0 else 0.0
    return {
        "exp": lambda: math.exp(-alpha * progress),
        "linear": lambda: 1.0 - progress,
        "cosine": lambda: (1.0 + math.cos(math.pi * progress)) / 2,
        "step": lambda: 1.0 if progress < step_at else 0.0,
        "static": lambda: static_sa_weight,
        "sa_only": lambda: 1.0,
        "pc_only": lambda: 0.0,
    }[schedule]()


class CurriculumCallback(TrainerCallback):
    """Sets the SA and PC entries of `trainer.reward_weights` before every step. `trainer` is attached
    after the trainer is built (callbacks are created before it)."""

    def __init__(self, sa_index: int, pc_index: int, schedule: str, **schedule_options):
        sa_weight(schedule, 0, 1, **schedule_options)  # an unknown schedule fails before training starts
        self.sa_index, self.pc_index = sa_index, pc_index
        self.schedule, self.schedule_options = schedule, schedule_options
        self.trainer = None
        self.history: list[tuple[int, float]] = []  # (step, w_sa) as applied

    def weights(self, step: int, total: int) -> tuple[float, float]:
        w_sa = sa_weight(self.schedule, step, total, **self.schedule_options)
        return w_sa, 1.0 - w_sa

    def on_step_begin(self, args, state, control, **kwargs):
        # t counts from 1, as the trainer's logs do: the entry logged at step t shows the weights of step t
        w_sa, w_pc = self.weights(state.global_step + 1, state.max_steps)
        self.trainer.reward_weights[self.sa_index] = w_sa
        self.trainer.reward_weights[self.pc_index] = w_pc
        self.history.append((state.global_step + 1, w_sa))

    def on_log(self, args, state, control, logs=None, **kwargs):
        # The Trainer has already put this entry in state.log_history (as a copy of `logs`): add the weights
        # there, which is what checkpoints keep and the reward plot reads.
        if self.trainer is None or not state.log_history or state.log_history[-1].get("step") != state.global_step:
            return
        weights = {"curriculum/w_sa": float(self.trainer.reward_weights[self.sa_index]),
                   "curriculum/w_pc": float(self.trainer.reward_weights[self.pc_index])}
        state.log_history[-1].update(weights)
        if logs is not None:
            logs.update(weights)
