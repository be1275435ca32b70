"""Learning-rate schedules as a function of env steps."""

from __future__ import annotations

import math


def learning_rate(
    step: int, total_steps: int, base_lr: float, schedule: str, warmup_steps: int = 0, min_lr: float = 0.0
) -> float:
    """The learning rate after ``step`` env steps of ``total_steps``.

    Linear warm-up from 0 over ``warmup_steps``, then ``constant`` (base_lr), ``linear`` (decay to
    min_lr at total_steps) or ``cosine`` (half cosine to min_lr at total_steps).
    """
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * step / warmup_steps
    if schedule == "constant":
        return base_lr
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / span))
    if schedule == "linear":
        return min_lr + (base_lr - min_lr) * (1.0 - progress)
    if schedule == "cosine":
        return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown lr schedule {schedule!r}; choose from constant, linear, cosine")
