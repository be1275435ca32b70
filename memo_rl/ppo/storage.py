"""Rollout storage ``[T, N, ...]`` with memory-state snapshots at sequence starts.

For memory cores a training minibatch must replay whole sequences from the memory state the
rollout had when the sequence began. The rollout of T steps is split into K = T / S sequences of
S steps per env; the state *entering* each sequence's first step is stored (before that step's
resets are applied, exactly as it was passed to ``step``). Sequences are then the unit of
minibatching: ``[T, N] -> [S, K * N]`` with sequence index ``k * N + n``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.utils._pytree import tree_map

from memo_rl.memory import cat_states, index_state
from memo_rl.types import AgentInputs


def to_sequences(x: Tensor, seq_len: int) -> Tensor:
    """``[T, N, ...] -> [S, K * N, ...]`` with K = T // S and column index k * N + n."""
    T, N = x.shape[:2]
    K = T // seq_len
    x = x.reshape(K, seq_len, N, *x.shape[2:])  # [K, S, N, ...]
    x = x.transpose(0, 1)  # [S, K, N, ...]
    return x.reshape(seq_len, K * N, *x.shape[3:])  # [S, K*N, ...]


def from_sequences(x: Tensor, num_envs: int) -> Tensor:
    """Inverse of :func:`to_sequences`: ``[S, K * N, ...] -> [T, N, ...]`` with T = K * S."""
    S, KN = x.shape[:2]
    K = KN // num_envs
    x = x.reshape(S, K, num_envs, *x.shape[2:])  # [S, K, N, ...]
    return x.transpose(0, 1).reshape(K * S, num_envs, *x.shape[3:])  # [K, S, N, ...] -> [T, N, ...]


class SequenceBatch(NamedTuple):
    """A minibatch of B whole sequences of S steps; every tensor is ``[S, B, ...]``."""

    inputs: AgentInputs
    resets: Tensor
    actions: Tensor
    log_probs: Tensor
    values: Tensor
    advantages: Tensor
    returns: Tensor
    initial_state: Any  # memory state entering each sequence, env dim first [B, ...]
    index: Tensor | None = None  # [B]: which sequences (columns of the [S, K * N] layout) these are


class RolloutStorage:
    """Fixed-size buffers for one rollout of ``rollout_length`` steps in ``num_envs`` envs."""

    def __init__(self, rollout_length: int, num_envs: int, sequence_length: int, device: torch.device) -> None:
        if rollout_length % sequence_length:
            raise ValueError(f"sequence_length {sequence_length} must divide rollout_length {rollout_length}")
        self.T, self.N, self.S = rollout_length, num_envs, sequence_length
        self.device = device
        T, N = self.T, self.N
        self.obs: Any = None  # allocated on first insert (shape/dtype from the env)
        self.prev_actions = torch.zeros(T, N, dtype=torch.long, device=device)
        self.prev_rewards = torch.zeros(T, N, device=device)
        self.episode_starts = torch.zeros(T, N, device=device)
        self.resets = torch.zeros(T, N, dtype=torch.bool, device=device)
        self.actions = torch.zeros(T, N, dtype=torch.long, device=device)
        self.log_probs = torch.zeros(T, N, device=device)
        self.values = torch.zeros(T, N, device=device)
        self.rewards = torch.zeros(T, N, device=device)
        self.dones = torch.zeros(T, N, dtype=torch.bool, device=device)
        self.truncation_values = torch.zeros(T, N, device=device)
        self.sequence_states: list[Any] = [None] * (T // sequence_length)

    def insert_inputs(self, t: int, inputs: AgentInputs, resets: Tensor, state: Any) -> None:
        """Store what the agent saw at step t (and, at a sequence start, the state entering it)."""
        if self.obs is None:
            self.obs = tree_map(lambda x: torch.zeros(self.T, *x.shape, dtype=x.dtype, device=self.device), inputs.obs)

        def put(buffer: Tensor, x: Tensor) -> None:
            buffer[t] = x

        tree_map(put, self.obs, inputs.obs)
        self.prev_actions[t] = inputs.prev_actions
        self.prev_rewards[t] = inputs.prev_rewards
        self.episode_starts[t] = inputs.episode_starts
        self.resets[t] = resets
        if t % self.S == 0:
            self.sequence_states[t // self.S] = tree_map(lambda x: x.detach().clone(), state)

    def insert_outcome(
        self, t: int, actions: Tensor, log_probs: Tensor, values: Tensor, rewards: Tensor, dones: Tensor,
        truncation_values: Tensor,
    ) -> None:
        self.actions[t] = actions
        self.log_probs[t] = log_probs
        self.values[t] = values
        self.rewards[t] = rewards
        self.dones[t] = dones
        self.truncation_values[t] = truncation_values

    def minibatches(
        self, advantages: Tensor, returns: Tensor, num_minibatches: int, generator: torch.Generator | None = None,
        log_probs: Tensor | None = None, values: Tensor | None = None,
    ):
        """Yield ``num_minibatches`` :class:`SequenceBatch` covering every sequence once, shuffled.

        ``log_probs`` / ``values`` ``[T, N]`` replace the rollout's as the batches' old policy
        and old values (PPO's ``recompute_old_policy``); by default the stored ones are used.
        """
        S = self.S
        seq = lambda x: to_sequences(x, S)  # noqa: E731
        inputs = AgentInputs(
            tree_map(seq, self.obs), seq(self.prev_actions), seq(self.prev_rewards), seq(self.episode_starts)
        )
        columns = dict(
            resets=seq(self.resets), actions=seq(self.actions),
            log_probs=seq(self.log_probs if log_probs is None else log_probs),
            values=seq(self.values if values is None else values), advantages=seq(advantages), returns=seq(returns),
        )
        states = cat_states(self.sequence_states)  # [K*N, ...], row k * N + n
        num_sequences = columns["actions"].shape[1]
        order = torch.randperm(num_sequences, generator=generator).to(self.device)
        for idx in order.chunk(num_minibatches):
            pick = lambda x, idx=idx: x[:, idx]  # noqa: E731
            yield SequenceBatch(
                inputs=AgentInputs(*(tree_map(pick, part) for part in inputs)),
                initial_state=index_state(states, idx),
                **{name: pick(value) for name, value in columns.items()},
                index=idx,
            )
