"""Rebuild the rollout's memory with the new weights after each PPO update.

After an update the memory carried into the next rollout (summaries, KV caches, hidden states)
was computed by the old weights, and the agent would otherwise act on stale memory for the rest
of the trial. Memo's reference trainer recomputes it from the trial's prefix after every partial
update (REFERENCES.md, Memo); we do the same: :class:`TrialHistory` keeps the agent inputs of the
rollouts since the oldest running trial began, and :meth:`TrialHistory.rebuild` replays them
through ``forward_sequence`` (eval mode, so Memo uses its fixed rollout segment length) to get the
memory the new weights would have built.

Exactness: for every env whose trial started inside the kept history, the rebuilt memory equals
what ``step`` with the new weights would hold. Histories are capped at ``max_steps`` (whole
rollouts); an env whose trial began before the kept history starts from the memory recorded at
that point instead, which is stale only in the part older than the cap.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from memo_rl.ppo.storage import RolloutStorage
from memo_rl.types import AgentInputs


class HistoryChunk(NamedTuple):
    """One rollout's inputs ``[T, N, ...]``, its resets ``[T, N]`` and the memory entering it."""

    inputs: AgentInputs
    resets: Tensor
    state: Any


class TrialHistory:
    """The rollouts needed to rebuild every env's memory from its trial start (at most ``max_steps``)."""

    def __init__(self, max_steps: int) -> None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.max_steps = max_steps
        self.chunks: list[HistoryChunk] = []

    @property
    def steps(self) -> int:
        return sum(chunk.resets.shape[0] for chunk in self.chunks)

    def record(self, storage: RolloutStorage) -> None:
        """Add the rollout just collected, then drop rollouts no env's current trial needs."""
        clone = lambda x: x.clone()  # noqa: E731
        inputs = AgentInputs(tree_map(clone, storage.obs), *(x.clone() for x in
                             (storage.prev_actions, storage.prev_rewards, storage.episode_starts)))
        self.chunks.append(HistoryChunk(inputs, storage.resets.clone(), storage.sequence_states[0]))
        # env n needs the rollouts from the one holding its latest trial start (or all of them)
        has_reset = torch.stack([chunk.resets.any(dim=0) for chunk in self.chunks])  # [chunks, N]
        index = torch.arange(len(self.chunks), device=has_reset.device).unsqueeze(1)  # [chunks, 1]
        latest_start = torch.where(has_reset, index, torch.zeros_like(index)).max(dim=0).values  # [N]
        first_needed = int(latest_start.min())
        del self.chunks[:first_needed]
        while len(self.chunks) > 1 and self.steps > self.max_steps:
            del self.chunks[0]

    @torch.no_grad()
    def rebuild(self, agent: nn.Module) -> Any:
        """The memory after the newest recorded step, recomputed with the agent's current weights."""
        inputs = AgentInputs(*(
            tree_map(lambda *xs: torch.cat(xs, dim=0), *parts)
            for parts in zip(*(chunk.inputs for chunk in self.chunks))
        ))  # each [sum T, N, ...]
        resets = torch.cat([chunk.resets for chunk in self.chunks], dim=0)
        was_training = agent.training
        agent.eval()
        try:
            return agent.forward_sequence(inputs, self.chunks[0].state, resets).state
        finally:
            agent.train(was_training)

    # -- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        cpu = lambda x: x.cpu()  # noqa: E731
        return {
            "max_steps": self.max_steps,
            "chunks": [
                {
                    "inputs": tuple(tree_map(cpu, list(chunk.inputs))),
                    "resets": chunk.resets.cpu(),
                    "state": [leaf.cpu() for leaf in tree_flatten(chunk.state)[0]],
                }
                for chunk in self.chunks
            ],
        }

    def load_state_dict(self, payload: dict[str, Any], state_template: Any, device: torch.device) -> None:
        """Restore; ``state_template`` is any memory state of the agent (gives the pytree structure)."""
        _, spec = tree_flatten(state_template)
        to = lambda x: x.to(device)  # noqa: E731
        self.chunks = [
            HistoryChunk(
                AgentInputs(*tree_map(to, list(chunk["inputs"]))),
                chunk["resets"].to(device),
                tree_unflatten([leaf.to(device) for leaf in chunk["state"]], spec),
            )
            for chunk in payload["chunks"]
        ]

