"""Typed batches passed across module boundaries (agent <-> PPO <-> trainer)."""

from __future__ import annotations

from typing import Any, NamedTuple

from torch import Tensor

Observation = Any
"""A tensor ``[..., *obs_shape]`` or a dict of such tensors (Dict observation spaces)."""


class AgentInputs(NamedTuple):
    """What the agent sees at a step; leading dims ``[N]`` (rollout) or ``[T, N]`` (training).

    ``prev_actions`` is -1 where there is no previous action (first step of a trial);
    ``prev_rewards`` is 0 there. ``episode_starts`` is 1.0 on the first step of every episode
    (including inside a trial), so episode boundaries are visible to the agent.
    """

    obs: Observation
    prev_actions: Tensor  # long
    prev_rewards: Tensor  # float
    episode_starts: Tensor  # float


class AgentOutput(NamedTuple):
    logits: Tensor  # [..., A]
    values: Tensor  # [...]
    state: Any  # memory-core state after the step(s), env dim first
