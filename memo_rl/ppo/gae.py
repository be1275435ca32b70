"""Generalized advantage estimation over a rollout ``[T, N]``.

Conventions (shared with the trainer):
- ``dones[t, n]`` is True where the return chain is cut *after* step t: nothing after t is credited
  to step t (a terminal state, or a time limit / trial end when cutting there).
- ``truncation_values[t, n]`` is the value of the final observation where that cut is a time limit
  (bootstrapping on truncation, Pardo et al. 2018); 0 where the cut is a true termination.
- ``bootstrap_values[n]`` is the value of the observation that follows the last step, with memory
  carried on, used where the last step is not cut.
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def compute_gae(
    rewards: Tensor,
    values: Tensor,
    dones: Tensor,
    bootstrap_values: Tensor,
    truncation_values: Tensor | None = None,
    gamma: float = 0.99,
    gae_lambda: float = 0.95,
) -> tuple[Tensor, Tensor]:
    """Return ``(advantages, returns)``, both ``[T, N]``; returns = advantages + values.

    delta_t = r_t + gamma * next_value_t - V_t, where next_value_t is V_{t+1} (or
    ``bootstrap_values`` at t = T-1) when step t is not cut, else ``truncation_values[t]``;
    A_t = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}.
    """
    T = rewards.shape[0]
    not_done = (~dones.bool()).to(values.dtype)
    cut_values = torch.zeros_like(values) if truncation_values is None else truncation_values
    next_values = torch.cat([values[1:], bootstrap_values.unsqueeze(0)], dim=0)  # [T, N]
    next_values = not_done * next_values + (1.0 - not_done) * cut_values
    deltas = rewards + gamma * next_values - values
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[0])
    for t in reversed(range(T)):
        running = deltas[t] + gamma * gae_lambda * not_done[t] * running
        advantages[t] = running
    return advantages, advantages + values
