"""Privileged prediction: an auxiliary loss that asks the memory for state the env knows.

Some observation keys are the answer to the task rather than something an agent could sense:
nav3d's ``goal_vector`` says where the goal is from the agent. Fed as input, it makes memory
useless. Withheld from the encoder and used as a *target* instead, it tells the memory core
what to work out: a decoder reads the core's output at step ``t`` and predicts the privileged
keys' values at ``t``. The policy never reads them, so acting (rollouts, evaluation, deployment)
needs nothing the agent could not sense; only the training loss uses them. This is in the spirit
of the auxiliary predictions of navigation agents (Mirowski et al. 2017, depth and loop closure)
and of asymmetric actor-critic training (Pinto et al. 2018), which give training what acting
lacks.

Where the target cannot be known (a goal not yet seen), the decoder's best answer is its mean
given what the memory holds, so the loss does not ask the core for the impossible; it pays
for holding what can be known. Targets are detached and standardised per feature over the
minibatch, as the recall targets are (:func:`agents.recall.standardize`), so the loss is
scale-free.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from gymnasium import spaces
from torch import Tensor, nn

from agents.recall import standardize


def split_privileged(space: spaces.Space, keys: Sequence[str]) -> tuple[spaces.Dict, int]:
    """(the Dict space without ``keys``, the flat width of ``keys``' values).

    ValueError with one line naming what is allowed when ``space`` is not a Dict, ``keys`` is
    empty, names a key the space lacks, names a non-Box key, or would leave nothing to read.
    """
    if not isinstance(space, spaces.Dict):
        raise ValueError(f"privileged keys {list(keys)} were given, but the observation space is not a Dict")
    boxes = sorted(k for k, sub in space.spaces.items() if isinstance(sub, spaces.Box))
    unknown = [k for k in keys if k not in boxes]
    if unknown or not keys:
        raise ValueError(f"privileged keys {unknown or 'an empty list'}: choose from the observation's Box keys "
                         f"({', '.join(boxes)})")
    rest = {k: sub for k, sub in space.spaces.items() if k not in keys}
    if not rest:
        raise ValueError(f"privileged keys {list(keys)} would leave the agent no observation to read")
    width = sum(math.prod(space.spaces[k].shape) for k in keys)  # a scalar Box's shape () counts 1
    return spaces.Dict(rest), width


class PrivilegedPrediction(nn.Module):
    """Decoder from the core's output at ``t`` to the privileged keys' values at ``t``.

    Args:
        keys: the privileged observation keys; their values are flattened and concatenated in
            sorted key order.
        d_model: width of the core's output.
        d_target: total flat width of the keys' values.
        hidden: hidden width of the decoder MLP.
        min_std: floor of the per-feature std the targets are standardised by.
    """

    def __init__(self, keys: Sequence[str], d_model: int, d_target: int, hidden: int, min_std: float = 0.05) -> None:
        super().__init__()
        self.keys = tuple(sorted(keys))
        self.min_std = min_std
        self.decoder = nn.Sequential(nn.Linear(d_model, hidden), nn.ReLU(), nn.Linear(hidden, d_target))

    def extra_repr(self) -> str:
        return f"keys={list(self.keys)}"

    def targets(self, obs: Mapping[str, Any], lead: Sequence[int]) -> Tensor:
        """The privileged values ``[*lead, d_target]`` from a dict observation with leading dims ``lead``."""
        missing = [k for k in self.keys if k not in obs]
        if missing:
            raise KeyError(f"observation is missing the privileged keys {missing} the agent was built with")
        return torch.cat([obs[k].float().reshape(*lead, -1) for k in self.keys], dim=-1)  # [*lead, d_target]

    def forward(self, targets: Tensor, core_outputs: Tensor) -> Tensor:
        """Mean squared error, over all positions and features, of the prediction from
        ``core_outputs`` ``[..., d_model]`` against ``targets`` ``[..., d_target]`` standardised per
        feature over all leading positions."""
        target = standardize(targets.detach().float(), self.min_std)  # [..., d_target]
        return (self.decoder(core_outputs).float() - target).pow(2).mean()
