"""Attention baselines over raw steps: full-context transformer (FCT) and Transformer-XL window.

- ``fct``: a causal transformer over the whole trial with a KV cache of every step since the
  trial began (the cache grows with the trial). ``window=W`` keeps only the newest W steps (the
  streaming truncation used to evaluate it on trials longer than it can hold).
- ``trxl``: a sliding window of the W most recent steps in training and rollout alike, with the
  cached steps detached from the graph every ``segment_length`` steps of a training sequence
  (Transformer-XL's stop-gradient memory, Dai et al. 2019; the cleanrl ``ppo_trxl`` baseline).

A step at position p attends to itself and to the cached steps at positions p - W .. p - 1; the
cache holds at most W tokens per env. Same blocks and sizes as Memo, so comparisons isolate the
memory. State (env dimension first): :class:`FCTState`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .base import MemoryCore, register_core, resets_as_bool, span_bounds
from .transformer import (
    KVSlots,
    TransformerStack,
    append_slots,
    compact,
    held_tokens,
    init_transformer_weights,
    mask_slots,
)


class FCTState(NamedTuple):
    """Cached steps of N envs and the number of steps since each env's trial began."""

    cache: KVSlots
    n_steps: Tensor  # [N] long: the position of the next step


class FullContextCore(MemoryCore):
    """Causal transformer over the trial (``memory.core=fct``).

    Args:
        d_model: token width.
        n_layers, n_heads: transformer depth and heads.
        window: attend to (and keep) only the newest W past steps (None: the whole trial).
        mlp_ratio: gated-MLP hidden width as a multiple of ``d_model``.
    """

    detach_every: int | None = None  # trxl: stop gradients into the cache every this many steps

    def __init__(self, d_model: int, n_layers: int = 3, n_heads: int = 4, window: int | None = None, mlp_ratio: float = 4.0):
        super().__init__(d_model)
        if window is not None and int(window) < 1:
            raise ValueError(f"window must be >= 1 step or None, got {window!r}")
        self.window = None if window is None else int(window)
        self.stack = TransformerStack(self.d_model, int(n_layers), int(n_heads), mlp_ratio)
        init_transformer_weights(self, int(n_layers))

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> FCTState:
        return FCTState(self.stack.empty_slots(batch_size, device), torch.zeros(batch_size, dtype=torch.long, device=device))

    def reset_state(self, state: FCTState, resets: Tensor | None) -> FCTState:
        if resets is None:
            return state
        keep = ~resets.to(torch.bool)  # [N]
        if bool(keep.all()):
            return state
        return FCTState(compact(mask_slots(state.cache, keep.unsqueeze(1))), state.n_steps * keep)

    def synthetic_state(self, batch_size: int, position: int, device: torch.device | str | None = None) -> FCTState:
        """The cache after ``position`` steps of a trial (the newest W steps when windowed)."""
        held = position if self.window is None else min(position, self.window)
        cache = self.stack.random_slots(batch_size, torch.arange(position - held, position), device)
        return FCTState(cache, torch.full((batch_size,), int(position), dtype=torch.long, device=device))

    def cached_tokens(self, state: FCTState) -> int:
        if state.cache.valid.shape[0] == 0:
            return 0
        return int(held_tokens(state.cache).max())

    def key_step_spans(self, key_pos: Tensor, state: FCTState) -> Tensor:
        """Every key is one step, at its own position. ``key_pos [N, K]`` -> ``[N, K, 2]``."""
        return torch.stack([key_pos, key_pos + 1], dim=-1)

    def _attend(self, x: Tensor, state: FCTState) -> tuple[Tensor, FCTState]:
        """A reset-free chunk ``x [N, C, d]`` -> ``y [N, C, d]``; appends the chunk to the cache."""
        C = x.shape[1]
        positions = state.n_steps.unsqueeze(1) + torch.arange(C, device=x.device)  # [N, C]
        attn_window = None if self.window is None else self.window + 1  # W past steps + itself
        y, k, v = self.stack.run(x, positions, state.cache, attn_window)
        cache = append_slots(state.cache, k, v, torch.ones_like(positions, dtype=torch.bool), positions)
        n_steps = state.n_steps + C
        if self.window is not None:  # keep the newest W steps
            cache = compact(mask_slots(cache, cache.pos >= (n_steps - self.window).unsqueeze(1)), force=True)
        return y, FCTState(cache, n_steps)

    def step(self, x: Tensor, state: FCTState, resets: Tensor | None) -> tuple[Tensor, FCTState]:
        N = x.shape[0]
        state = self.reset_state(state, resets_as_bool(resets, (N,), x.device))
        y, state = self._attend(x.unsqueeze(1), state)  # [N, d] -> [N, 1, d]
        return y.squeeze(1), state  # [N, 1, d] -> [N, d]

    def forward_sequence(self, x: Tensor, state: FCTState, resets: Tensor | None) -> tuple[Tensor, FCTState]:
        """``x [T, N, d]``, ``resets [T, N]`` -> ``y [T, N, d]``: one batched pass per reset-free span."""
        T, N = x.shape[:2]
        resets = resets_as_bool(resets, (T, N), x.device)
        if T == 0:
            return x, state
        detach_cuts = list(range(self.detach_every, T, self.detach_every)) if self.training and self.detach_every else []
        bounds = span_bounds(resets, detach_cuts)
        ys = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            state = self.reset_state(state, resets[a])
            if a in detach_cuts:
                state = FCTState(state.cache._replace(k=state.cache.k.detach(), v=state.cache.v.detach()), state.n_steps)
            y, state = self._attend(x[a:b].transpose(0, 1), state)  # [C, N, d] -> [N, C, d]
            ys.append(y)
        return torch.cat(ys, dim=1).transpose(0, 1), state  # [N, T, d] -> [T, N, d]

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_layers={self.stack.n_layers}, n_heads={self.stack.n_heads}, window={self.window}"


class TransformerXLCore(FullContextCore):
    """Sliding-window transformer with a stop-gradient cache (``memory.core=trxl``).

    Args:
        window: past steps each step attends to (the memory length), in training and rollout.
        segment_length: in a training sequence, the cache is detached every this many steps
            (default: ``window``), as Transformer-XL trains segment by segment.
    """

    def __init__(
        self, d_model: int, n_layers: int = 3, n_heads: int = 4, window: int = 128, segment_length: int | None = None,
        mlp_ratio: float = 4.0,
    ):
        if window is None:
            raise ValueError("trxl needs a window (steps of cached memory), got None")
        super().__init__(d_model, n_layers, n_heads, window, mlp_ratio)
        if segment_length is not None and int(segment_length) < 1:
            raise ValueError(f"segment_length must be >= 1, got {segment_length!r}")
        self.detach_every = int(segment_length) if segment_length is not None else self.window


register_core("fct", FullContextCore)
register_core("trxl", TransformerXLCore)
