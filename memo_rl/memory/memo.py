"""Memo: a transformer that writes periodic summary tokens and remembers only those (DESIGN.md s4).

Gupta et al. 2025. The stream is cut into segments of ``segment_length`` steps. At each segment's
end ``summary_length`` learned queries are appended; their final-layer outputs (after the final
norm) are the segment's summary. A step attends to the summaries of earlier segments and to the
earlier steps of its own segment, never to raw steps of earlier segments. Positions follow the
order tokens are produced: summary block b occupies positions ``b*l_sum .. b*l_sum + l_sum - 1``;
the steps of the segment after block B start at ``B*l_sum`` and its queries follow the steps.
Within each segment forward this is exactly "summaries first, then steps" (RoPE sees only
relative positions).

A new summary is *re-encoded*: passed through all layers as input tokens attending to the earlier
summaries, and its keys/values are what later steps attend to (skipping this hurt in the paper).
Re-encoding block by block equals re-running the whole summary prefix at every segment, because
summaries never attend to steps. The cache therefore holds the summaries' KV plus the current
segment's KV: at most ``n_summaries * l_sum + l_seg`` tokens per env, whatever the trial length.

Training (``forward_sequence`` in train mode) backpropagates through every summary of the sequence
and, unless ``randomize_segments=False``, draws the segment length per call uniformly from
``[0.8, 1.2] x segment_length`` (turning this off was clearly worse in the paper), or once for
all calls inside ``fixed_training_draws()`` (what PPO's ``ppo.recompute_old_policy`` uses).
Rollout (``step``) and eval mode use ``segment_length``.

``window=W`` keeps only the newest W summary blocks (the bounded memory of streaming evaluation);
``rmt`` is the same model with W = 1 always: only the newest summary block is carried.

``read=hcam`` replaces the attention to every summary by an HCAM read (:mod:`.hcam`): a step
attends to its own segment and, after each layer, reads the top-k summary blocks of that layer
(chunk key = mean of the block). Re-encoding a new summary keeps each layer's input as that
layer's chunk; unlike HCAM over raw steps, these chunks keep their gradient (Memo learns through
its summaries).

State (env dimension first): :class:`MemoState`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from .base import MemoryCore, register_core, resets_as_bool, segment_ends, span_bounds
from .hcam import (
    ChunkMemory,
    HCAMRead,
    append_chunks,
    empty_chunks,
    pack_chunks,
    prepare_chunk,
    random_chunks,
    read_hook,
)
from .transformer import (
    KVSlots,
    TransformerStack,
    append_slots,
    compact,
    held_tokens,
    init_transformer_weights,
    mask_slots,
)

READS = ("full", "hcam")


class MemoState(NamedTuple):
    """Memory of N envs: summary KV, current-segment KV and counters."""

    memory: KVSlots | ChunkMemory  # the summaries' keys/values (pos = block * l_sum + j); chunks with read=hcam
    segment: KVSlots  # the current segment's steps
    n_blocks: Tensor  # [N] long: summary blocks written since the trial began
    seg_steps: Tensor  # [N] long: steps taken in the current segment


def _index_envs(memory: KVSlots | ChunkMemory, idx: Tensor) -> KVSlots | ChunkMemory:
    """The envs ``idx`` of a cache (any NamedTuple of tensors with the env dimension first)."""
    return type(memory)(*(t[idx] for t in memory))


class MemoCore(MemoryCore):
    """Summary-token memory (``memory.core=memo``).

    Args:
        d_model: token width.
        segment_length: steps per segment (``l_seg``).
        summary_length: summary tokens per segment (``l_sum``).
        n_layers, n_heads: transformer depth and heads.
        window: keep only the newest W summary blocks (None: all, bounded by the trial).
        randomize_segments: in training, draw the segment length per forward from
            ``[0.8, 1.2] x segment_length`` (per ``fixed_training_draws`` block inside one).
        mlp_ratio: gated-MLP hidden width as a multiple of ``d_model``.
        read: how a step reads the summaries: ``full`` (attends to every summary token) or
            ``hcam`` (each layer reads the ``top_k`` most relevant summary blocks through
            hierarchical chunk attention, a block being a chunk; cost grows with k, not with the
            number of summaries). Summaries keep their gradient either way.
        top_k: summary blocks read per query with ``read=hcam``.
    """

    may_skip_parameters = True  # summary queries (and the HCAM read) take part only where a segment ends

    def __init__(
        self,
        d_model: int,
        segment_length: int = 64,
        summary_length: int = 8,
        n_layers: int = 3,
        n_heads: int = 4,
        window: int | None = None,
        randomize_segments: bool = True,
        mlp_ratio: float = 4.0,
        read: str = "full",
        top_k: int = 4,
    ) -> None:
        super().__init__(d_model)
        if read not in READS:
            raise ValueError(f"read must be one of {', '.join(READS)}, got {read!r}")
        for name, value in (("segment_length", segment_length), ("summary_length", summary_length)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value!r}")
        if window is not None and int(window) < 1:
            raise ValueError(f"window must be >= 1 summary block or None, got {window!r}")
        self.segment_length, self.summary_length = int(segment_length), int(summary_length)
        self.window = None if window is None else int(window)
        self.randomize_segments = bool(randomize_segments)
        self._held_segment_length: int | None = None  # set inside fixed_training_draws()
        self.stack = TransformerStack(self.d_model, int(n_layers), int(n_heads), mlp_ratio)
        self.queries = nn.Parameter(torch.zeros(self.summary_length, self.d_model))  # [l_sum, d]
        self.read = read
        if read == "hcam":  # one HCAM read per layer over the summary blocks (a block is a chunk)
            self.reads = nn.ModuleList(
                HCAMRead(self.d_model, int(n_heads), top_k, self.summary_length) for _ in range(int(n_layers))
            )
        init_transformer_weights(self, int(n_layers))

    # -- state ----------------------------------------------------------------------------------
    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> MemoState:
        zeros = torch.zeros(batch_size, dtype=torch.long, device=device)
        if self.read == "hcam":
            dtype = self.stack.final_norm.weight.dtype
            memory = empty_chunks(batch_size, self.stack.n_layers, self.summary_length, self.d_model, device, dtype)
        else:
            memory = self.stack.empty_slots(batch_size, device)
        return MemoState(memory, self.stack.empty_slots(batch_size, device), zeros, zeros.clone())

    def _keep_memory(self, memory: KVSlots | ChunkMemory, keep: Tensor) -> KVSlots | ChunkMemory:
        """The memory with only the slots / chunks where ``keep [N, P]`` (or ``[N, 1]``) holds."""
        if isinstance(memory, ChunkMemory):
            return pack_chunks(memory._replace(valid=memory.valid & keep))
        return compact(mask_slots(memory, keep))

    def reset_state(self, state: MemoState, resets: Tensor | None) -> MemoState:
        if resets is None:
            return state
        keep = ~resets.to(torch.bool)  # [N]
        if bool(keep.all()):
            return state
        return MemoState(
            self._keep_memory(state.memory, keep.unsqueeze(1)),
            compact(mask_slots(state.segment, keep.unsqueeze(1))),
            state.n_blocks * keep,
            state.seg_steps * keep,
        )

    def synthetic_state(self, batch_size: int, position: int, device: torch.device | str | None = None) -> MemoState:
        """The cache after ``position`` steps of a trial: its summaries (newest W) plus the open segment."""
        n_blocks, seg_steps = divmod(int(position), self.segment_length)
        held = n_blocks if self.window is None else min(n_blocks, self.window)
        first = (n_blocks - held) * self.summary_length
        if self.read == "hcam":
            dtype = self.stack.final_norm.weight.dtype
            memory = random_chunks(batch_size, self.stack.n_layers, self.summary_length, self.d_model,
                                   n_blocks - held, n_blocks, device, dtype, self.window)
        else:
            memory = self.stack.random_slots(batch_size, torch.arange(first, n_blocks * self.summary_length), device)
        segment_pos = n_blocks * self.summary_length + torch.arange(seg_steps)
        counts = torch.full((batch_size,), n_blocks, dtype=torch.long, device=device)
        return MemoState(memory, self.stack.random_slots(batch_size, segment_pos, device), counts, torch.full_like(counts, seg_steps))

    def cached_tokens(self, state: MemoState) -> int:
        """Most tokens any env holds (summary tokens + current-segment steps)."""
        if state.memory.valid.shape[0] == 0:
            return 0
        if isinstance(state.memory, ChunkMemory):
            summary_tokens = state.memory.held() * self.summary_length
        else:
            summary_tokens = held_tokens(state.memory)
        return int((summary_tokens + held_tokens(state.segment)).max())

    def key_step_spans(self, key_pos: Tensor, state: MemoState) -> Tensor:
        """Summary keys stand for their whole segment, step keys for their own step (eval mode,
        segments of ``segment_length`` steps). ``key_pos [N, K]`` -> ``[N, K, 2]``."""
        first_step_pos = (state.n_blocks * self.summary_length).unsqueeze(1)  # [N, 1]
        is_summary = key_pos < first_step_pos
        segment = torch.div(key_pos, self.summary_length, rounding_mode="floor")
        step = state.n_blocks.unsqueeze(1) * self.segment_length + key_pos - first_step_pos
        first = torch.where(is_summary, segment * self.segment_length, step)
        last = torch.where(is_summary, first + self.segment_length, step + 1)
        return torch.stack([first, last], dim=-1)  # [N, K, 2]

    # -- forward --------------------------------------------------------------------------------
    @property
    def random_training_forward(self) -> bool:
        return self.randomize_segments

    @contextlib.contextmanager
    def fixed_training_draws(self) -> Iterator[None]:
        """One segment length for every train-mode forward inside the block."""
        self._held_segment_length = self._draw_segment_length()
        try:
            yield
        finally:
            self._held_segment_length = None

    def _draw_segment_length(self) -> int:
        scale = 0.8 + 0.4 * torch.rand(()).item()  # uniform in [0.8, 1.2] (Memo, sec. 3)
        return max(1, int(self.segment_length * scale))

    def _forward_segment_length(self) -> int:
        if not (self.training and self.randomize_segments):
            return self.segment_length
        if self._held_segment_length is not None:
            return self._held_segment_length
        return self._draw_segment_length()

    def step(self, x: Tensor, state: MemoState, resets: Tensor | None) -> tuple[Tensor, MemoState]:
        """``x [N, d]``, ``resets [N]`` -> ``y [N, d]``; writes a summary when a segment fills."""
        N = x.shape[0]
        state = self.reset_state(state, resets_as_bool(resets, (N,), x.device))
        y, state = self._attend_steps(x.unsqueeze(1), state)  # [N, d] -> [N, 1, d]
        done = state.seg_steps >= self.segment_length
        if bool(done.any()):
            state = self._write_summary(state, done)
        return y.squeeze(1), state  # [N, 1, d] -> [N, d]

    def forward_sequence(self, x: Tensor, state: MemoState, resets: Tensor | None) -> tuple[Tensor, MemoState]:
        """``x [T, N, d]``, ``resets [T, N]`` -> ``y [T, N, d]``, state after step T-1.

        Time is cut into chunks inside which every env stays within one segment and no env
        resets; each chunk is one batched pass, and summaries are written at chunk ends.
        """
        T, N = x.shape[:2]
        resets = resets_as_bool(resets, (T, N), x.device)
        if T == 0:
            return x, state
        seg_len = self._forward_segment_length()
        completes = segment_ends(state.seg_steps, resets, seg_len)  # [T, N] bool, numpy
        bounds = span_bounds(resets, np.nonzero(completes.any(axis=1))[0] + 1)  # summaries written after a cut
        completes_t = torch.as_tensor(completes, device=x.device)
        ys = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            state = self.reset_state(state, resets[a])
            y, state = self._attend_steps(x[a:b].transpose(0, 1), state)  # [C, N, d] -> [N, C, d]
            ys.append(y)
            done = completes_t[b - 1]
            if bool(done.any()):
                state = self._write_summary(state, done)
        return torch.cat(ys, dim=1).transpose(0, 1), state  # [N, T, d] -> [T, N, d]

    def _attend_steps(self, x: Tensor, state: MemoState) -> tuple[Tensor, MemoState]:
        """A chunk of steps ``x [N, C, d]`` inside each env's current segment -> ``y [N, C, d]``."""
        C = x.shape[1]
        offsets = torch.arange(C, device=x.device)
        positions = (state.n_blocks * self.summary_length + state.seg_steps).unsqueeze(1) + offsets  # [N, C]
        if self.read == "hcam":  # attend to the own segment, read the top-k summary blocks
            y, k, v = self.stack.run(x, positions, state.segment, layer_hook=read_hook(self.reads, state.memory))
        else:
            y, k, v = self.stack.run(x, positions, (state.memory, state.segment))  # no copy of the summaries
        valid = torch.ones_like(positions, dtype=torch.bool)
        segment = append_slots(state.segment, k, v, valid, positions)
        return y, state._replace(segment=segment, seg_steps=state.seg_steps + C)

    def summarize_segment(self, memory: KVSlots, segment: KVSlots, n_blocks: Tensor, seg_steps: Tensor) -> Tensor:
        """The summary ``[n, l_sum, d]`` of the given envs' current segments (queries after the steps)."""
        n = n_blocks.shape[0]
        offsets = torch.arange(self.summary_length, device=n_blocks.device)
        positions = (n_blocks * self.summary_length + seg_steps).unsqueeze(1) + offsets  # [n, l_sum]
        queries = self.queries.unsqueeze(0).expand(n, -1, -1)  # [l_sum, d] -> [n, l_sum, d]
        if self.read == "hcam":
            summary, _, _ = self.stack.run(queries, positions, segment, layer_hook=read_hook(self.reads, memory))
        else:
            summary, _, _ = self.stack.run(queries, positions, (memory, segment))
        return summary

    def summary_positions(self, n_blocks: Tensor) -> Tensor:
        """Positions ``[n, l_sum]`` of the summary block each env writes next (block ``n_blocks``)."""
        offsets = torch.arange(self.summary_length, device=n_blocks.device)
        return (n_blocks * self.summary_length).unsqueeze(1) + offsets  # [n] -> [n, l_sum]

    def reencode_summary(self, summary: Tensor, positions: Tensor, memory: KVSlots) -> tuple[Tensor, Tensor]:
        """Keys and values ``[n, L, H, l_sum, dh]`` of a new summary ``[n, l_sum, d]`` at
        ``positions``, passed through every layer attending to the earlier summaries only."""
        _, k, v = self.stack.run(summary, positions, memory)
        return k, v

    def _write_summary(self, state: MemoState, done: Tensor) -> MemoState:
        """Summarise, re-encode and store the segments of the envs where ``done [N]``; clear those segments."""
        N = done.shape[0]
        everyone = bool(done.all())
        idx = torch.arange(N, device=done.device) if everyone else torch.nonzero(done).squeeze(1)
        pick = (lambda s: s) if everyone else (lambda s: _index_envs(s, idx))  # noqa: E731
        memory, segment = pick(state.memory), pick(state.segment)
        n_blocks = state.n_blocks if everyone else state.n_blocks[idx]
        seg_steps = state.seg_steps if everyone else state.seg_steps[idx]

        summary = self.summarize_segment(memory, segment, n_blocks, seg_steps)  # [n, l_sum, d]
        positions = self.summary_positions(n_blocks)  # [n, l_sum]
        new_blocks = state.n_blocks + done.long()
        if self.read == "hcam":  # re-encode: attend within the block, read earlier blocks; keep each layer's input
            layer_inputs: list[Tensor] = []  # summaries keep their gradient: Memo trains through them
            hook = read_hook(self.reads, memory, layer_inputs, detach=False)
            self.stack.run(summary, positions, self.stack.empty_slots(idx.shape[0], done.device), layer_hook=hook)
            kv, keys = prepare_chunk(self.reads, torch.stack(layer_inputs, dim=1))  # L x [n, l_sum, d] -> [n, L, l_sum, d]
            new_memory = append_chunks(state.memory, idx, kv, keys, n_blocks, self.window, new_blocks)
        else:
            k, v = self.reencode_summary(summary, positions, memory)
            if not everyone:  # scatter the n new blocks into N-env columns (other envs: invalid slots)
                k = k.new_zeros((N, *k.shape[1:])).index_copy(0, idx, k)
                v = v.new_zeros((N, *v.shape[1:])).index_copy(0, idx, v)
                positions = positions.new_zeros((N, self.summary_length)).index_copy(0, idx, positions)
            valid = done.unsqueeze(1).expand(N, self.summary_length)  # [N] -> [N, l_sum]
            new_memory = append_slots(state.memory, k, v, valid, positions)
            if self.window is not None:  # keep the newest W blocks: positions >= (n_blocks - W) * l_sum
                oldest = (new_blocks - self.window).clamp_min(0) * self.summary_length
                new_memory = mask_slots(new_memory, new_memory.pos >= oldest.unsqueeze(1))
            new_memory = compact(new_memory)
        segment = mask_slots(state.segment, ~done.unsqueeze(1))
        return MemoState(new_memory, compact(segment), new_blocks, state.seg_steps * ~done)

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, segment_length={self.segment_length}, summary_length={self.summary_length}, "
            f"n_layers={self.stack.n_layers}, n_heads={self.stack.n_heads}, window={self.window}, "
            f"randomize_segments={self.randomize_segments}"
        )


class RMTCore(MemoCore):
    """Recurrent Memory Transformer baseline (``memory.core=rmt``): Memo keeping only the newest
    summary block (Bulatov et al. 2022), in training and rollout alike."""

    def __init__(
        self,
        d_model: int,
        segment_length: int = 64,
        summary_length: int = 8,
        n_layers: int = 3,
        n_heads: int = 4,
        randomize_segments: bool = True,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__(
            d_model, segment_length, summary_length, n_layers, n_heads, window=1,
            randomize_segments=randomize_segments, mlp_ratio=mlp_ratio,
        )


register_core("memo", MemoCore)
register_core("rmt", RMTCore)
