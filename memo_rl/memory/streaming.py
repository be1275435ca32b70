"""Streaming Memo on fixed-size buffers: a rollout step of constant shapes with no host sync,
which a CUDA graph can capture (issue: scale out and speed up).

``MemoCore.step`` keeps growable caches (:class:`~.transformer.KVSlots`): each step joins the
summary cache and the open segment per layer, appends to buffers whose width changes, and
compacts after each summary write. On an H100 with 4096 envs the streaming step (newest 16
summary blocks) spent 4.65 ms per step launching kernels and copying, not attending
(docs/benchmarks.md).

With a window of W summary blocks, everything a step reads fits in buffers of a fixed width
``P = W * l_sum + l_seg``, per layer ``[N, H, P, dh]``:

- slots ``[0, W * l_sum)``: a ring of the newest W summary blocks, block b in slots
  ``(b mod W) * l_sum ...`` (writing block b overwrites block b - W, the one the window drops);
- slots ``[W * l_sum, P)``: the open segment, its step s in slot ``W * l_sum + s``.

A step writes its key and value into its slot, then attends over the whole buffer under the
validity mask: no copy of the cache, the same shapes every step. It computes what
``MemoCore.step`` computes in eval mode (tests/test_memory_streaming.py: equal to 1e-5, with
resets and envs at different points of their segments).

Summary writes happen once per ``l_seg`` steps per env and are not part of the step: they run
eagerly, afterwards, for the envs whose segment filled. Which envs those are is known on the host
from the resets the caller passes (the stepper mirrors each env's step in its segment), so a
step never waits for the device. Pass resets on the CPU, as they come from the env; resets on the
GPU cost one copy to the host per step.

``cuda_graph=True`` (CUDA only) records the step once in a CUDA graph and replays it: one launch
per step instead of a few hundred.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import sdpa_kernel

from .memo import MemoCore, MemoState
from .transformer import SDPA_BACKENDS, KVSlots


class StreamingMemoStepper:
    """Steps N envs of a windowed Memo core (``memory.read=full``) on fixed-size buffers.

    Args:
        core: the Memo core, with ``window`` set (the streaming bound). Its weights are read as
            they are when each step runs (the stepper holds no copy of them).
        num_envs: N.
        device: where the buffers live (the core's device).
        dtype: dtype of the key/value buffers: the dtype the keys are computed in (the core's
            parameter dtype, or ``amp_dtype`` under autocast).
        amp_dtype: run each step under autocast to this dtype (``train.amp``), or None.
        cuda_graph: record the step in a CUDA graph at the first step and replay it after.

    Usage: ``stepper.load(state)`` (or start empty), then ``y = stepper.step(x, resets)`` per env
    step with ``x [N, d]`` and ``resets [N]`` (or None); ``stepper.state()`` returns the memory as
    a :class:`MemoState` that ``core.step`` continues from.
    """

    def __init__(
        self, core: MemoCore, num_envs: int, device: torch.device | str | None = None,
        dtype: torch.dtype | None = None, amp_dtype: torch.dtype | None = None, cuda_graph: bool = False,
    ) -> None:
        if not isinstance(core, MemoCore) or core.read != "full":
            raise ValueError(f"StreamingMemoStepper needs a Memo core with read=full, got {core!r}")
        if core.window is None:
            raise ValueError("StreamingMemoStepper needs a Memo core with a window (memory.window=W summary blocks), "
                             "got window=None")
        device = torch.device(device if device is not None else core.queries.device)
        if cuda_graph and device.type != "cuda":
            raise ValueError(f"cuda_graph=True needs a CUDA device, got {device}")
        self.core, self.num_envs, self.device = core, int(num_envs), device
        self.amp_dtype, self.cuda_graph = amp_dtype, bool(cuda_graph)
        stack = core.stack
        self.summary_slots = core.window * core.summary_length  # W * l_sum
        self.width = self.summary_slots + core.segment_length  # P
        dtype = dtype or amp_dtype or core.queries.dtype
        N, L, H, dh = self.num_envs, stack.n_layers, stack.n_heads, stack.head_dim
        self.k = torch.zeros(L, N, H, self.width, dh, device=device, dtype=dtype)  # layer first: [N, H, P, dh] per layer
        self.v = torch.zeros_like(self.k)
        self.valid = torch.zeros(N, self.width, dtype=torch.bool, device=device)
        self.pos = torch.zeros(N, self.width, dtype=torch.long, device=device)
        self.n_blocks = torch.zeros(N, dtype=torch.long, device=device)
        self.seg_steps = torch.zeros(N, dtype=torch.long, device=device)
        self._x = torch.zeros(N, core.d_model, device=device)
        self._resets = torch.zeros(N, dtype=torch.bool, device=device)
        self._host_seg_steps = np.zeros(N, dtype=np.int64)  # mirror of seg_steps: which envs write a summary
        self._graph: torch.cuda.CUDAGraph | None = None
        self._y: Tensor | None = None

    # -- state ------------------------------------------------------------------------------------
    def _buffers(self) -> tuple[Tensor, ...]:
        return (self.k, self.v, self.valid, self.pos, self.n_blocks, self.seg_steps)

    def load(self, state: MemoState) -> None:
        """Take over a ``MemoState`` of N envs (one host sync). Summary slots older than the
        window are dropped, as ``core.step`` drops them."""
        core, S = self.core, self.summary_slots
        if not isinstance(state.memory, KVSlots):
            raise ValueError("StreamingMemoStepper.load needs the state of a Memo core with read=full")
        if state.n_blocks.shape[0] != self.num_envs:
            raise ValueError(f"the state holds {state.n_blocks.shape[0]} envs, the stepper {self.num_envs}")
        n_blocks = state.n_blocks.to(self.device).unsqueeze(1)  # [N, 1]
        memory, segment = (KVSlots(*(t.to(self.device) for t in part)) for part in (state.memory, state.segment))
        block = torch.div(memory.pos, core.summary_length, rounding_mode="floor")  # [N, Pm]
        in_window = memory.valid & (block >= n_blocks - core.window)
        summary_slot = (block % core.window) * core.summary_length + memory.pos % core.summary_length
        segment_slot = S + segment.pos - n_blocks * core.summary_length  # [N, Ps]
        trash = self.width  # slots not held go to one extra column, dropped below
        slots = torch.cat([torch.where(in_window, summary_slot, trash), torch.where(segment.valid, segment_slot, trash)],
                          dim=1)  # [N, Pm + Ps]
        for buffer, parts in ((self.k, (memory.k, segment.k)), (self.v, (memory.v, segment.v))):
            src = torch.cat(parts, dim=3).transpose(0, 1)  # [N, L, H, Pm + Ps, dh] -> [L, N, H, Pm + Ps, dh]
            full = buffer.new_zeros((*buffer.shape[:3], self.width + 1, buffer.shape[4]))  # [L, N, H, P + 1, dh]
            full.scatter_(3, slots.view(1, *slots.shape[:1], 1, slots.shape[1], 1).expand_as(src), src.to(buffer.dtype))
            buffer.copy_(full[:, :, :, : self.width])
        for buffer, parts in ((self.pos, (memory.pos, segment.pos)), (self.valid, (in_window, segment.valid))):
            full = buffer.new_zeros((self.num_envs, self.width + 1))
            full.scatter_(1, slots, torch.cat(parts, dim=1).to(buffer.dtype))
            buffer.copy_(full[:, : self.width])
        self.n_blocks.copy_(state.n_blocks)
        self.seg_steps.copy_(state.seg_steps)
        self._host_seg_steps[:] = state.seg_steps.cpu().numpy()

    def state(self) -> MemoState:
        """The memory as a :class:`MemoState` (copies): ring and segment slots, unordered."""
        S = self.summary_slots

        def part(sl: slice) -> KVSlots:
            return KVSlots(self.k[:, :, :, sl].transpose(0, 1).clone(), self.v[:, :, :, sl].transpose(0, 1).clone(),
                           self.valid[:, sl].clone(), self.pos[:, sl].clone())  # k, v [L, N, ...] -> [N, L, ...]

        return MemoState(part(slice(0, S)), part(slice(S, self.width)), self.n_blocks.clone(), self.seg_steps.clone())

    def cached_tokens(self) -> int:
        """Most tokens any env holds (summary tokens + current-segment steps); one host sync."""
        return int(self.valid.sum(dim=1).max()) if self.num_envs else 0

    def bytes_per_env(self) -> float:
        """Bytes of the fixed buffers per env (allocated, whatever the envs hold)."""
        return sum(t.numel() * t.element_size() for t in self._buffers()) / max(self.num_envs, 1)

    # -- stepping -----------------------------------------------------------------------------------
    @contextmanager
    def _autocast(self) -> Iterator[None]:
        # a recorded graph must not rely on autocast's cache of cast weights (CUDA graph docs)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.bfloat16,
                            enabled=self.amp_dtype is not None, cache_enabled=False):
            yield

    def _step_body(self) -> Tensor:
        """One step of every env from the static inputs ``_x``, ``_resets``: fixed shapes, no sync."""
        core, stack, N = self.core, self.core.stack, self.num_envs
        keep = ~self._resets  # [N]
        self.valid.logical_and_(keep.unsqueeze(1))
        self.n_blocks.mul_(keep)
        self.seg_steps.mul_(keep)
        positions = (self.n_blocks * core.summary_length + self.seg_steps).unsqueeze(1)  # [N, 1]
        slot = (self.summary_slots + self.seg_steps).unsqueeze(1)  # [N, 1]
        self.pos.scatter_(1, slot, positions)
        self.valid.scatter_(1, slot, True)
        mask = self.valid.view(N, 1, 1, self.width)  # [N, P] -> [N, 1, 1, P]: each query sees the valid slots
        kv_index = slot.view(N, 1, 1, 1).expand(N, stack.n_heads, 1, stack.head_dim)  # [N, 1] -> [N, H, 1, dh]
        h = self._x.unsqueeze(1)  # [N, d] -> [N, 1, d]
        for layer, block in enumerate(stack.blocks):
            q, k, v = block.project(h, stack.rope, positions)  # [N, H, 1, dh]
            keys, values = self.k[layer], self.v[layer]  # [N, H, P, dh]
            keys.scatter_(2, kv_index, k.to(keys.dtype))
            values.scatter_(2, kv_index, v.to(values.dtype))
            with sdpa_kernel(SDPA_BACKENDS):
                att = F.scaled_dot_product_attention(q.to(keys.dtype), keys, values, attn_mask=mask)  # [N, H, 1, dh]
            h = block.finish(h, att)
        self.seg_steps.add_(1)
        return stack.final_norm(h).squeeze(1)  # [N, 1, d] -> [N, d]

    @torch.no_grad()
    def step(self, x: Tensor, resets: Tensor | np.ndarray | None = None) -> Tensor:
        """``x [N, d]``, ``resets [N]`` (True: clear that env's memory before this step) -> ``y [N, d]``."""
        if resets is None:
            self._resets.zero_()
        else:
            host = np.asarray(resets.cpu() if isinstance(resets, Tensor) else resets, dtype=bool)
            if host.shape != (self.num_envs,):
                raise ValueError(f"resets must have shape [{self.num_envs}], got {list(host.shape)}")
            self._host_seg_steps[host] = 0
            self._resets.copy_(torch.from_numpy(host))
        self._x.copy_(x)
        with self._autocast():
            if self.cuda_graph:
                if self._graph is None:
                    self._record()
                self._graph.replay()
                y = self._y.clone()
            else:
                y = self._step_body()
        self._host_seg_steps += 1
        full = np.nonzero(self._host_seg_steps >= self.core.segment_length)[0]
        if full.size:
            with self._autocast():
                self._write_summaries(torch.from_numpy(full).to(self.device))
            self._host_seg_steps[full] = 0
        return y

    def _write_summaries(self, idx: Tensor) -> None:
        """Summarise the full segments of envs ``idx [n]``, store each summary in its ring slots
        (over the block the window drops) and open a new segment. Eager: runs once per segment."""
        core, S = self.core, self.summary_slots
        k, v = self.k[:, idx].transpose(0, 1), self.v[:, idx].transpose(0, 1)  # [L, n, H, P, dh] -> [n, L, H, P, dh]
        valid, pos, n_blocks, seg_steps = self.valid[idx], self.pos[idx], self.n_blocks[idx], self.seg_steps[idx]
        ring = KVSlots(k[:, :, :, :S], v[:, :, :, :S], valid[:, :S], pos[:, :S])
        segment = KVSlots(k[:, :, :, S:], v[:, :, :, S:], valid[:, S:], pos[:, S:])
        summary = core.summarize_segment(ring, segment, n_blocks, seg_steps)  # [n, l_sum, d]
        positions = core.summary_positions(n_blocks)  # [n, l_sum]
        new_k, new_v = core.reencode_summary(summary, positions, ring)  # [n, L, H, l_sum, dh]
        first = (n_blocks % core.window) * core.summary_length  # [n]
        slots = first.unsqueeze(1) + torch.arange(core.summary_length, device=idx.device)  # [n, l_sum]
        rows = idx.unsqueeze(1)  # [n, 1]
        # [L, N, H, P, dh] viewed as [N, P, L, H, dh]: (env, slot) pairs index the ring
        self.k.permute(1, 3, 0, 2, 4)[rows, slots] = new_k.permute(0, 3, 1, 2, 4).to(self.k.dtype)
        self.v.permute(1, 3, 0, 2, 4)[rows, slots] = new_v.permute(0, 3, 1, 2, 4).to(self.v.dtype)
        self.pos[rows, slots] = positions
        self.valid[rows, slots] = True
        self.valid[rows, S + torch.arange(core.segment_length, device=idx.device)] = False  # a new segment
        self.n_blocks[idx] += 1
        self.seg_steps[idx] = 0

    def _record(self) -> None:
        """Record ``_step_body`` in a CUDA graph. Warm-up steps (needed before recording) run on
        a copy of the state, which is put back."""
        saved = [t.clone() for t in self._buffers()]
        self.seg_steps.zero_()  # the warm-up steps must stay inside the segment's slots
        main = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)  # warm-up and recording on one stream: per-stream library handles
        side.wait_stream(main)                 # (cuBLAS workspaces) are then created before the recording
        with torch.cuda.stream(side):
            for _ in range(2):
                self._step_body()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=side):
            self._y = self._step_body()
        main.wait_stream(side)
        self._graph = graph
        for buffer, old in zip(self._buffers(), saved):
            buffer.copy_(old)
