"""Hierarchical chunk attention (HCAM, Lampinen et al. 2021) and the ``hcam`` memory core.

:class:`HCAMRead` reads a memory kept as chunks of past embeddings (``chunk_size`` steps each).
Each chunk's key is the mean of its contents; a query scores every chunk key, keeps the top-k
chunks, runs multi-head attention inside each selected chunk, and sums the k results weighted by
the softmax over the k scores. Chunk contents carry a learned position-in-chunk encoding and are
stored detached (no gradient reaches them, as in the reference). A chunk's key and the keys/values
of its contents are computed once, when it is stored (:meth:`HCAMRead.prepare`), so a read costs
one dot product per chunk key plus attention inside k chunks, whatever the number of chunks.

:class:`HCAMCore` (``memory.core=hcam``) is a transformer whose blocks attend causally within the
current chunk of steps only, and after each block read long-term memory through that layer's HCAM
module (a residual update). A chunk completes every ``chunk_size`` steps: each layer's inputs for
those steps become that layer's new memory chunk. ``window=W`` keeps the newest W chunks
(streaming). Resets clear everything of the env. ``chunk_grad=True`` departs from the reference:
a chunk completed inside a training forward keeps its gradient, so later reads train what earlier
steps write (chunks from before the forward, e.g. the rollout-start snapshot, have none).

Shapes: N envs, Q queries, M chunks, C chunk size, L layers, H heads, dh head width, d width.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from .base import MemoryCore, register_core, resets_as_bool, segment_ends, span_bounds
from .transformer import (
    KVSlots,
    RMSNorm,
    TransformerStack,
    append_slots,
    compact,
    held_tokens,
    init_transformer_weights,
    mask_slots,
)


class HCAMRead(nn.Module):
    """Top-k chunk attention over a chunked memory; returns the residual update for the queries.

    Args:
        d_model: width of queries and memory contents.
        n_heads: heads of the attention inside a chunk.
        top_k: chunks read per query (fewer when fewer are stored). With ``top_k=1`` the chunk
            scores get no gradient (the softmax over one score is 1), so the selection cannot
            learn; it learns through the weights of the k >= 2 chunks read.
        chunk_size: steps per chunk (the position-in-chunk encoding's length).
    """

    def __init__(self, d_model: int, n_heads: int, top_k: int, chunk_size: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} must be divisible by n_heads {n_heads}")
        if int(top_k) < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k!r}")
        self.n_heads, self.head_dim, self.top_k = n_heads, d_model // n_heads, int(top_k)
        self.query_norm = RMSNorm(d_model)
        self.memory_norm = RMSNorm(d_model)
        self.chunk_pos = nn.Parameter(torch.zeros(chunk_size, d_model))  # [C, d] relative position in chunk
        self.score_q = nn.Linear(d_model, d_model, bias=False)
        self.score_k = nn.Linear(d_model, d_model, bias=False)
        self.q = nn.Linear(d_model, d_model, bias=False)
        self.kv = nn.Linear(d_model, 2 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def prepare(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """Chunks as stored: ``memory [..., C, d]`` raw embeddings -> the keys/values of their
        contents ``[..., C, 2d]`` (position-in-chunk encoded, normalised, projected) and chunk keys
        ``[..., d]`` (projected mean of the contents). Done once per chunk, so a read never
        touches unselected chunks beyond one dot product with their key."""
        contents = self.memory_norm(memory + self.chunk_pos)  # [..., C, d]
        return self.kv(contents), self.score_k(contents.mean(dim=-2))

    def chunk_scores(self, h: Tensor, keys: Tensor, valid: Tensor) -> Tensor:
        """Relevance of every chunk to every query: ``h [N, Q, d]``, ``keys [N, M, d]`` -> ``[N, Q, M]``
        (-inf for invalid chunks)."""
        d = h.shape[-1]
        scores = self.score_q(self.query_norm(h)) @ keys.transpose(1, 2) * d**-0.5  # [N, Q, M]
        return scores.masked_fill(~valid.unsqueeze(1), float("-inf"))

    def attend_within(self, h: Tensor, kv: Tensor) -> Tensor:
        """Attention of each query inside each of its chunks: ``h [N, Q, d]``, ``kv [N, Q, k, C, 2d]``
        (the prepared chunks chosen per query) -> ``[N, Q, k, d]``. The brute-force form, one copy of
        a chunk per query (tests); :meth:`forward` reads through :meth:`attend_within_all`."""
        N, Q, k, C, d2 = kv.shape
        d, H, dh = d2 // 2, self.n_heads, self.head_dim
        q = self.q(self.query_norm(h)).view(N, Q, H, dh)  # [N, Q, d] -> [N, Q, H, dh]
        keys, values = kv.split(d, dim=-1)  # 2 x [N, Q, k, C, d]
        keys = keys.reshape(N, Q, k, C, H, dh)
        values = values.reshape(N, Q, k, C, H, dh)
        logits = torch.einsum("nqhe,nqkche->nqkhc", q, keys) * dh**-0.5  # [N, Q, k, H, C]
        read = torch.einsum("nqkhc,nqkche->nqkhe", logits.softmax(dim=-1), values)  # [N, Q, k, H, dh]
        return read.reshape(N, Q, k, d)  # [N, Q, k, H, dh] -> [N, Q, k, d]

    def within_chunk_weights(self, h: Tensor, kv: Tensor) -> Tensor:
        """Each head's attention of every query over the steps of every chunk: ``h [N, Q, d]``,
        ``kv [N, M, C, 2d]`` -> ``[N, Q, M, H, C]`` (softmax over C)."""
        N, M, C, d2 = kv.shape
        Q, H, dh = h.shape[1], self.n_heads, self.head_dim
        q = self.q(self.query_norm(h)).view(N, Q, H, dh)  # [N, Q, d] -> [N, Q, H, dh]
        keys = kv[..., : d2 // 2].reshape(N, M, C, H, dh)  # [N, M, C, d] -> [N, M, C, H, dh]
        return (torch.einsum("nqhe,nmche->nqmhc", q, keys) * dh**-0.5).softmax(dim=-1)  # [N, Q, M, H, C]

    def attend_within_all(self, h: Tensor, kv: Tensor) -> Tensor:
        """:meth:`attend_within` for every query in every chunk, without copying chunks per query:
        ``h [N, Q, d]``, ``kv [N, M, C, 2d]`` -> ``[N, Q, M, d]``."""
        N, M, C, d2 = kv.shape
        Q, d, H, dh = h.shape[1], d2 // 2, self.n_heads, self.head_dim
        values = kv[..., d:].reshape(N, M, C, H, dh)  # [N, M, C, d] -> [N, M, C, H, dh]
        read = torch.einsum("nqmhc,nmche->nqmhe", self.within_chunk_weights(h, kv), values)  # [N, Q, M, H, dh]
        return read.reshape(N, Q, M, d)  # [N, Q, M, H, dh] -> [N, Q, M, d]

    def forward(self, h: Tensor, kv: Tensor, keys: Tensor, valid: Tensor) -> Tensor:
        """``h [N, Q, d]`` queries; prepared chunks ``kv [N, M, C, 2d]``, ``keys [N, M, d]``;
        ``valid [N, M]`` -> update ``[N, Q, d]``. Queries with no valid chunk get a zero update.

        Each env's queries read together the chunks any of them selected (the union of their
        top-k, U <= min(M, Q k) chunks): one copy of each such chunk, not one per query, and the
        others are never touched. A query's unselected chunks in that union get weight 0. One query
        (a rollout step) reads its k chunks; a training span of Q steps whose queries agree on
        their chunks reads about k, whatever M is (finding U costs one host sync on a GPU).
        """
        N, Q, M = h.shape[0], h.shape[1], kv.shape[1]
        if M == 0:
            return torch.zeros_like(h)
        scores = self.chunk_scores(h, keys, valid)
        k = min(self.top_k, M)
        top_scores, top_index = scores.topk(k, dim=-1)  # [N, Q, k]; invalid chunks score -inf
        weights = torch.nan_to_num(top_scores.softmax(dim=-1), nan=0.0)  # no valid chunk at all -> 0
        if Q == 1 and k < M:  # one query (a rollout step): its own k chunks, weights [N, 1, k] as they are
            columns = top_index.view(N, k)  # [N, 1, k] -> [N, k]
        else:
            dense = weights.new_zeros(N, Q, M).scatter(2, top_index, weights)  # [N, Q, k] -> [N, Q, M]
            chosen = torch.zeros(N, M, dtype=torch.bool, device=h.device).scatter(1, top_index.view(N, Q * k), True)
            width = int(chosen.sum(dim=1).max())  # U: most chunks an env's queries selected together
            if width == M:
                return self.out((dense.unsqueeze(-1) * self.attend_within_all(h, kv)).sum(dim=2))  # [N, Q, d]
            columns = torch.argsort((~chosen).to(torch.int8), dim=1, stable=True)[:, :width]  # [N, U]: chosen first
            weights = dense.gather(2, columns.unsqueeze(1).expand(N, Q, width))  # [N, Q, M] -> [N, Q, U]
        env = torch.arange(N, device=h.device).unsqueeze(1)  # [N, 1]
        read = self.attend_within_all(h, kv[env, columns])  # [N, U, C, 2d] chunks -> [N, Q, U, d]
        return self.out((weights.unsqueeze(-1) * read).sum(dim=2))  # [N, Q, d]


class ChunkMemory(NamedTuple):
    """Prepared chunks of N envs, layer-major (a layer's memory is contiguous), packed per env.

    Env n's chunks sit in columns ``0 .. count[n] - 1`` (:func:`pack_chunks`); columns beyond are
    allocated room to append into (:func:`chunk_capacity`).
    """

    kv: Tensor  # [N, L, M, C, 2d] keys/values of each chunk's contents, per layer (HCAMRead.prepare)
    keys: Tensor  # [N, L, M, d] chunk keys
    valid: Tensor  # [N, M] bool
    index: Tensor  # [N, M] long: the chunk's number in the trial

    def held(self) -> Tensor:
        """Chunks per env ``[N]``."""
        return self.valid.sum(dim=1)


def empty_chunks(batch_size: int, n_layers: int, chunk: int, d_model: int, device, dtype) -> ChunkMemory:
    return ChunkMemory(
        torch.zeros(batch_size, n_layers, 0, chunk, 2 * d_model, device=device, dtype=dtype),
        torch.zeros(batch_size, n_layers, 0, d_model, device=device, dtype=dtype),
        torch.zeros(batch_size, 0, dtype=torch.bool, device=device),
        torch.zeros(batch_size, 0, dtype=torch.long, device=device),
    )


def random_chunks(batch_size: int, n_layers: int, chunk: int, d_model: int, first: int, last: int,
                  device, dtype, window: int | None = None) -> ChunkMemory:
    """Chunks number ``first .. last - 1`` of random contents, in the columns stepping allocates (benchmarks)."""
    held = last - first
    width = chunk_capacity(held, window) if held else 0
    valid = torch.zeros(batch_size, width, dtype=torch.bool, device=device)
    valid[:, :held] = True
    index = torch.zeros(batch_size, width, dtype=torch.long, device=device)
    index[:, :held] = torch.arange(first, last, device=device)
    return ChunkMemory(
        torch.randn(batch_size, n_layers, width, chunk, 2 * d_model, device=device, dtype=dtype),
        torch.randn(batch_size, n_layers, width, d_model, device=device, dtype=dtype), valid, index,
    )


def chunk_capacity(needed: int, window: int | None = None) -> int:
    """Columns allocated for ``needed`` chunks: the first of 8, 10, 13, 17, ... (x1.25) that fits, so
    appending stays amortised O(chunk) and a state stepped to n chunks has ``chunk_capacity(n)``
    columns; with a window of W chunks never more than W + 1 (the newest W plus the one appended
    before the oldest is dropped)."""
    capacity = 0
    while capacity < needed:
        capacity = max(8, -(-capacity * 5 // 4))  # ceil(1.25 x)
    return capacity if window is None else max(needed, min(capacity, window + 1))


def pack_chunks(memory: ChunkMemory) -> ChunkMemory:
    """Move each env's valid chunks to the front (keeping order); keep the allocated width unless
    no env holds a chunk."""
    valid = memory.valid
    N, M = valid.shape
    count = valid.sum(dim=1)  # [N]
    if M and int(count.max()) == 0:
        return ChunkMemory(memory.kv[:, :, :0], memory.keys[:, :, :0], valid[:, :0], memory.index[:, :0])
    packed = torch.arange(M, device=valid.device).unsqueeze(0) < count.unsqueeze(1)  # [N, M]
    if bool((valid == packed).all()):
        return memory
    order = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)  # [N, M]: valid columns first
    _, L, _, C, d2 = memory.kv.shape
    kv_index = order.view(N, 1, M, 1, 1).expand(N, L, M, C, d2)  # [N, M] -> [N, L, M, C, 2d]
    key_index = order.view(N, 1, M, 1).expand(N, L, M, d2 // 2)  # [N, M] -> [N, L, M, d]
    return ChunkMemory(memory.kv.gather(2, kv_index), memory.keys.gather(2, key_index), valid.gather(1, order),
                       memory.index.gather(1, order))


def _ensure_capacity(memory: ChunkMemory, needed: int, window: int | None) -> ChunkMemory:
    M = memory.valid.shape[1]
    if needed <= M:
        return memory
    extra = chunk_capacity(needed, window) - M

    def widen(t: Tensor, dim: int) -> Tensor:
        shape = list(t.shape)
        shape[dim] = extra
        return torch.cat([t, t.new_zeros(shape)], dim=dim)

    return ChunkMemory(widen(memory.kv, 2), widen(memory.keys, 2), widen(memory.valid, 1), widen(memory.index, 1))


def append_chunks(memory: ChunkMemory, env: Tensor, kv: Tensor, keys: Tensor, number: Tensor,
                  window: int | None, n_chunks: Tensor) -> ChunkMemory:
    """Append one chunk to each env in ``env [n]``: ``kv [n, L, C, 2d]``, ``keys [n, L, d]``, its
    number in the trial ``number [n]``; then keep the newest ``window`` chunks (of ``n_chunks [N]``
    written so far, this one included).

    Env n's new chunk goes to column ``count[n]``, a column no state marks valid. Without autograd
    it is written in place (a state handed out earlier still reads the same chunks: its valid mask,
    never written in place, excludes that column); with autograd out of place, since earlier reads
    may have saved the tensor for backward.
    """
    count = memory.held()
    memory = _ensure_capacity(memory, int(count.max()) + 1, window)
    layers = torch.arange(memory.kv.shape[1], device=env.device)
    column = count[env]
    where = (env.unsqueeze(1), layers.unsqueeze(0), column.unsqueeze(1))  # broadcast to [n, L]
    kv, keys = kv.to(memory.kv.dtype), keys.to(memory.keys.dtype)  # bf16 under autocast; the store keeps its dtype
    if torch.is_grad_enabled():
        all_kv, all_keys = memory.kv.index_put(where, kv), memory.keys.index_put(where, keys)
    else:
        all_kv, all_keys = memory.kv.index_put_(where, kv), memory.keys.index_put_(where, keys)
    valid = memory.valid.index_put((env, column), torch.ones_like(env, dtype=torch.bool))
    index = memory.index.index_put((env, column), number)
    if window is not None:  # keep the newest W chunks
        valid = valid & (index >= (n_chunks - window).unsqueeze(1))
    return pack_chunks(ChunkMemory(all_kv, all_keys, valid, index))


def read_hook(reads: nn.ModuleList, memory: ChunkMemory, layer_inputs: list[Tensor] | None = None, detach: bool = True):
    """A ``TransformerStack.run`` layer hook adding each layer's HCAM read of ``memory`` after its
    block; it collects the layer inputs (detached if ``detach``) into ``layer_inputs`` if given."""

    def hook(layer: int, h_in: Tensor, h_out: Tensor) -> Tensor:
        if layer_inputs is not None:
            layer_inputs.append(h_in.detach() if detach else h_in)
        return h_out + reads[layer](h_out, memory.kv[:, layer], memory.keys[:, layer], memory.valid)

    return hook


def prepare_chunk(reads: nn.ModuleList, layer_inputs: Tensor) -> tuple[Tensor, Tensor]:
    """Per layer :meth:`HCAMRead.prepare`: ``layer_inputs [n, L, C, d]`` -> kv ``[n, L, C, 2d]``, keys ``[n, L, d]``."""
    prepared = [read.prepare(layer_inputs[:, layer]) for layer, read in enumerate(reads)]
    return torch.stack([kv for kv, _ in prepared], dim=1), torch.stack([k for _, k in prepared], dim=1)


class HCAMState(NamedTuple):
    """Memory of N envs: current-chunk KV and layer inputs, completed chunks, counters."""

    local: KVSlots  # the current chunk's steps (local attention); pos = step index in the trial
    buffer: Tensor  # [N, L, C, d] each layer's inputs for the current chunk's steps (detached unless chunk_grad)
    fill: Tensor  # [N] long: steps in the current chunk
    memory: ChunkMemory  # completed chunks
    n_chunks: Tensor  # [N] long: chunks completed since the trial began


class HCAMCore(MemoryCore):
    """Local attention within the current chunk plus an HCAM read of past chunks per layer (``memory.core=hcam``).

    Args:
        d_model: token width.
        chunk_size: steps per memory chunk (C).
        top_k: chunks each query reads.
        n_layers, n_heads: transformer depth and heads.
        window: keep only the newest W chunks (None: all chunks of the trial).
        mlp_ratio: gated-MLP hidden width as a multiple of ``d_model``.
        chunk_grad: keep the gradient of chunks stored during a forward (default False: stored
            contents are detached, as in the reference).
    """

    may_skip_parameters = True  # the chunk read takes part only once a chunk is complete

    def __init__(
        self, d_model: int, chunk_size: int = 32, top_k: int = 4, n_layers: int = 3, n_heads: int = 4,
        window: int | None = None, mlp_ratio: float = 4.0, chunk_grad: bool = False,
    ) -> None:
        super().__init__(d_model)
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
        if window is not None and int(window) < 1:
            raise ValueError(f"window must be >= 1 chunk or None, got {window!r}")
        self.chunk_size, self.top_k = int(chunk_size), int(top_k)
        self.window = None if window is None else int(window)
        self.chunk_grad = bool(chunk_grad)
        self.stack = TransformerStack(self.d_model, int(n_layers), int(n_heads), mlp_ratio)
        self.reads = nn.ModuleList(HCAMRead(self.d_model, int(n_heads), top_k, self.chunk_size) for _ in range(int(n_layers)))
        init_transformer_weights(self, int(n_layers))

    @property
    def n_layers(self) -> int:
        return self.stack.n_layers

    # -- state ----------------------------------------------------------------------------------
    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> HCAMState:
        dtype = self.stack.final_norm.weight.dtype
        L, C, d = self.n_layers, self.chunk_size, self.d_model
        zeros = torch.zeros(batch_size, dtype=torch.long, device=device)
        return HCAMState(
            self.stack.empty_slots(batch_size, device),
            torch.zeros(batch_size, L, C, d, device=device, dtype=dtype),
            zeros,
            empty_chunks(batch_size, L, C, d, device, dtype),
            zeros.clone(),
        )

    def reset_state(self, state: HCAMState, resets: Tensor | None) -> HCAMState:
        if resets is None:
            return state
        keep = ~resets.to(torch.bool)  # [N]
        if bool(keep.all()):
            return state
        return state._replace(
            local=compact(mask_slots(state.local, keep.unsqueeze(1))),
            fill=state.fill * keep,
            memory=pack_chunks(state.memory._replace(valid=state.memory.valid & keep.unsqueeze(1))),
            n_chunks=state.n_chunks * keep,
        )

    def synthetic_state(self, batch_size: int, position: int, device: torch.device | str | None = None) -> HCAMState:
        """The memory after ``position`` steps of a trial: its chunks (newest W, in the columns
        stepping would have allocated) plus the open chunk."""
        n_chunks, fill = divmod(int(position), self.chunk_size)
        held = n_chunks if self.window is None else min(n_chunks, self.window)
        dtype = self.stack.final_norm.weight.dtype
        L, C, d = self.n_layers, self.chunk_size, self.d_model
        local = self.stack.random_slots(batch_size, n_chunks * C + torch.arange(fill), device)
        counts = torch.full((batch_size,), n_chunks, dtype=torch.long, device=device)
        return HCAMState(
            local, torch.randn(batch_size, L, C, d, device=device, dtype=dtype), torch.full_like(counts, fill),
            random_chunks(batch_size, L, C, d, n_chunks - held, n_chunks, device, dtype, self.window), counts,
        )

    def cached_tokens(self, state: HCAMState) -> int:
        """Most steps any env holds (completed chunks plus the open chunk)."""
        if state.fill.shape[0] == 0:
            return 0
        return int((state.memory.held() * self.chunk_size + held_tokens(state.local)).max())

    # -- forward --------------------------------------------------------------------------------
    def step(self, x: Tensor, state: HCAMState, resets: Tensor | None) -> tuple[Tensor, HCAMState]:
        """``x [N, d]``, ``resets [N]`` -> ``y [N, d]``; stores a chunk when one fills."""
        N = x.shape[0]
        state = self.reset_state(state, resets_as_bool(resets, (N,), x.device))
        y, state = self._attend(x.unsqueeze(1), state)  # [N, d] -> [N, 1, d]
        done = state.fill >= self.chunk_size
        if bool(done.any()):
            state = self._store_chunk(state, done)
        return y.squeeze(1), state  # [N, 1, d] -> [N, d]

    def forward_sequence(self, x: Tensor, state: HCAMState, resets: Tensor | None) -> tuple[Tensor, HCAMState]:
        """``x [T, N, d]``, ``resets [T, N]`` -> ``y [T, N, d]``: one batched pass per span inside
        which no env resets or completes a chunk."""
        T, N = x.shape[:2]
        resets = resets_as_bool(resets, (T, N), x.device)
        if T == 0:
            return x, state
        completes = segment_ends(state.fill, resets, self.chunk_size)  # [T, N]
        bounds = span_bounds(resets, np.nonzero(completes.any(axis=1))[0] + 1)
        completes_t = torch.as_tensor(completes, device=x.device)
        ys = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            state = self.reset_state(state, resets[a])
            y, state = self._attend(x[a:b].transpose(0, 1), state)  # [Q, N, d] -> [N, Q, d]
            ys.append(y)
            done = completes_t[b - 1]
            if bool(done.any()):
                state = self._store_chunk(state, done)
        return torch.cat(ys, dim=1).transpose(0, 1), state  # [N, T, d] -> [T, N, d]

    def _attend(self, x: Tensor, state: HCAMState) -> tuple[Tensor, HCAMState]:
        """Q steps ``x [N, Q, d]`` inside each env's current chunk -> ``y [N, Q, d]``."""
        N, Q, d = x.shape
        offsets = torch.arange(Q, device=x.device)
        positions = (state.n_chunks * self.chunk_size + state.fill).unsqueeze(1) + offsets  # [N, Q]
        layer_inputs: list[Tensor] = []  # memory contents get no gradient (HCAM) unless chunk_grad
        hook = read_hook(self.reads, state.memory, layer_inputs, detach=not self.chunk_grad)
        y, k, v = self.stack.run(x, positions, state.local, layer_hook=hook)
        local = append_slots(state.local, k, v, torch.ones_like(positions, dtype=torch.bool), positions)
        new = torch.stack(layer_inputs, dim=1)  # L x [N, Q, d] -> [N, L, Q, d]
        slot = state.fill.unsqueeze(1) + offsets  # [N, Q]; spans never cross a chunk end
        index = slot.view(N, 1, Q, 1).expand(N, self.n_layers, Q, d)  # [N, Q] -> [N, L, Q, d]
        buffer = state.buffer.scatter(2, index, new.to(state.buffer.dtype))  # bf16 under autocast
        return y, state._replace(local=local, buffer=buffer, fill=state.fill + Q)

    def _store_chunk(self, state: HCAMState, done: Tensor) -> HCAMState:
        """Append the current chunk of the envs where ``done [N]`` to their memory; open a new chunk."""
        env = torch.nonzero(done).squeeze(1)
        kv, keys = prepare_chunk(self.reads, state.buffer[env])  # [n, L, C, 2d], [n, L, d]
        n_chunks = state.n_chunks + done.long()
        memory = append_chunks(state.memory, env, kv, keys, state.n_chunks[env], self.window, n_chunks)
        local = compact(mask_slots(state.local, ~done.unsqueeze(1)))
        return HCAMState(local, state.buffer, state.fill * ~done, memory, n_chunks)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, chunk_size={self.chunk_size}, top_k={self.top_k}, "
                f"n_layers={self.n_layers}, n_heads={self.stack.n_heads}, window={self.window}, chunk_grad={self.chunk_grad}")


register_core("hcam", HCAMCore)
