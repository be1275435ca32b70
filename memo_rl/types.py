"""Typed batches passed across module boundaries (agent <-> PPO <-> trainer)."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
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
    recall_loss: Tensor | None = None  # scalar; training forward of an agent with a recall head only
    privileged_loss: Tensor | None = None  # scalar; training forward of an agent with privileged keys only


def first_inputs(obs: Observation, num_envs: int, device: torch.device | str) -> AgentInputs:
    """Inputs for the first step of a trial: no previous action or reward, an episode start."""
    return AgentInputs(
        obs,
        torch.full((num_envs,), -1, dtype=torch.long, device=device),
        torch.zeros(num_envs, device=device),
        torch.ones(num_envs, device=device),
    )


def next_inputs(obs: Observation, actions: Tensor, rewards: Tensor, ended: Tensor, trial_end: Tensor) -> AgentInputs:
    """Inputs after an env step, all ``[N]``: the step's action and reward become the previous
    ones, except where a trial ended (the next step starts a fresh trial, which must not see the
    last one); ``ended`` (episode ends, bool) marks episode starts."""
    return AgentInputs(
        obs,
        torch.where(trial_end, torch.full_like(actions, -1), actions),
        torch.where(trial_end, torch.zeros_like(rewards), rewards),
        ended.to(rewards.dtype),
    )
