"""Shared transformer machinery for the attention cores (memo, rmt, fct, trxl).

- :class:`DecoderBlock`: pre-norm block (RMSNorm -> attention -> residual, RMSNorm -> gated MLP
  -> residual), LLaMA style as in Memo's reference model, with rotary position embeddings (RoPE)
  and attention through ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels on GPU).
- :class:`KVSlots`: a per-env key/value cache kept as *slots* with a validity mask and the position
  of each slot. Appending is a concatenation and clearing is a mask update, so the cache works the
  same under autograd (training) and in rollout, and envs may be at different points of their trials
  (their caches are never aligned by index, only by the mask). :func:`compact` moves each env's
  valid slots to the front and trims the shared width to the longest env.
- :class:`TransformerStack`: the blocks plus the final norm; ``run`` processes a chunk of new tokens
  for N envs attending to the cached slots and to each other causally, returning the outputs and
  the chunk's keys/values for every layer.

Causality is expressed through positions only: query i may attend key j iff the slot is valid and
``pos[j] <= pos[i]`` (and, with a positional window W, ``pos[i] - pos[j] < W``). Every caller keeps
positions strictly increasing in the order tokens are produced, so this is the causal mask.

Shapes: N envs, C new tokens, P cached slots, L layers, H heads, dh head width, d model width.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

# Attention kernels ``DecoderBlock`` may use. cuDNN's is left out: it builds an execution plan for
# every new shape, and our key widths change at every step (growing caches, random segment
# lengths). On an H100 that cost 5-7 ms of host time per call and made Memo's PPO update
# host-bound (experiments/profile_update.py); flash / memory-efficient kernels have no such cost.
SDPA_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]

# A chunk of at most 1/SPLIT_READ_RATIO as many tokens as a cache of at least SPLIT_READ_MIN_KEYS
# keys reads that cache in place (:func:`split_attention`) instead of through SDPA on a copy of
# cache + chunk. One-step rollout at long trial positions is the case: copying Memo's 1,024
# summary keys and values per layer took 83% of a CPU step at trial step 16k.
SPLIT_READ_MIN_KEYS = 256
SPLIT_READ_RATIO = 16


class KVSlots(NamedTuple):
    """Cached keys/values of N envs, all layers; slots may be invalid (cleared) and are unordered.

    Keys are stored already rotated (RoPE at their own position), so a cached key never needs
    recomputation when newer tokens arrive.
    """

    k: Tensor  # [N, L, H, P, dh]
    v: Tensor  # [N, L, H, P, dh]
    valid: Tensor  # [N, P] bool
    pos: Tensor  # [N, P] long: the position each slot's token was encoded at

    @property
    def width(self) -> int:
        return self.valid.shape[1]


def empty_slots(batch_size: int, n_layers: int, n_heads: int, head_dim: int, device, dtype) -> KVSlots:
    """A cache with zero slots for ``batch_size`` envs."""
    kv_shape = (batch_size, n_layers, n_heads, 0, head_dim)
    return KVSlots(
        torch.zeros(kv_shape, device=device, dtype=dtype),
        torch.zeros(kv_shape, device=device, dtype=dtype),
        torch.zeros(batch_size, 0, dtype=torch.bool, device=device),
        torch.zeros(batch_size, 0, dtype=torch.long, device=device),
    )


def random_slots(
    batch_size: int, n_layers: int, n_heads: int, head_dim: int, positions: Tensor, device, dtype
) -> KVSlots:
    """A full cache of random keys/values at ``positions [P]`` (shared by all envs), for benchmarks."""
    P = positions.shape[0]
    kv_shape = (batch_size, n_layers, n_heads, P, head_dim)
    return KVSlots(
        torch.randn(kv_shape, device=device, dtype=dtype),
        torch.randn(kv_shape, device=device, dtype=dtype),
        torch.ones(batch_size, P, dtype=torch.bool, device=device),
        positions.to(device).unsqueeze(0).expand(batch_size, P).contiguous(),  # [P] -> [N, P]
    )


def append_slots(slots: KVSlots, k: Tensor, v: Tensor, valid: Tensor, pos: Tensor) -> KVSlots:
    """Append C slots per env: ``k, v [N, L, H, C, dh]``, ``valid, pos [N, C]``.

    The cache takes the dtype of the keys appended to it (bf16 under ``train.amp``), so attention
    reads it without a cast and every later append copies half the bytes; the cache is converted
    once, at the first append of the other dtype.
    """
    if slots.k.dtype != k.dtype:
        slots = slots._replace(k=slots.k.to(k.dtype), v=slots.v.to(v.dtype))
    return KVSlots(
        append_along(slots.k, k, dim=3),
        append_along(slots.v, v, dim=3),
        append_along(slots.valid, valid, dim=1),
        append_along(slots.pos, pos, dim=1),
    )


# Spare room of a cache buffer, as a multiple of what it holds, when it grows (see append_along).
CACHE_GROWTH = 1.25


def append_along(t: Tensor, new: Tensor, dim: int) -> Tensor:
    """``torch.cat([t, new], dim)``, without copying ``t`` where that is safe.

    Outside autograd, the result is a view of a buffer with spare room along ``dim`` (grown by
    ``CACHE_GROWTH`` when full, so appending one slot per step costs amortised O(1) copies, not a
    copy of the whole cache). ``new`` is written into the room in place only when ``t`` is exactly
    the buffer's filled prefix (``_filled`` marks it): a state appended to twice, e.g. a rollout's
    snapshot replayed while the rollout went on, gets a fresh buffer the second time. Older states
    sharing a buffer never see the slots written after them: they read their own width only.
    Under autograd this is ``torch.cat`` (in-place writes would break saved tensors).
    """
    if torch.is_grad_enabled() or t.is_inference():
        return torch.cat([t, new], dim=dim)
    width, extra = t.shape[dim], new.shape[dim]
    base = t._base
    if (
        base is not None and getattr(base, "_filled", None) == width and base.shape[dim] >= width + extra
        and t.stride() == base.stride() and t.storage_offset() == base.storage_offset()
        and t.shape[:dim] + t.shape[dim + 1:] == base.shape[:dim] + base.shape[dim + 1:]
    ):
        base.narrow(dim, width, extra).copy_(new)
    else:
        shape = list(t.shape)
        shape[dim] = max(int((width + extra) * CACHE_GROWTH), width + extra + 8)
        base = t.new_empty(shape)
        base.narrow(dim, 0, width).copy_(t)
        base.narrow(dim, width, extra).copy_(new)
    base._filled = width + extra
    return base.narrow(dim, 0, width + extra)


def mask_slots(slots: KVSlots, keep: Tensor) -> KVSlots:
    """Invalidate the slots where ``keep [N, P]`` (or ``[N, 1]``) is False."""
    return slots._replace(valid=slots.valid & keep)


def compact(slots: KVSlots, force: bool = False) -> KVSlots:
    """Move each env's valid slots to the front (keeping their order) and trim to the longest env.

    Costs one host sync. Without ``force`` it only rewrites the cache when at least a quarter of
    the width is free in every env (so appending one token per step stays amortised O(1)).
    """
    width = slots.width
    if width == 0:
        return slots
    longest = int(slots.valid.sum(dim=1).max())
    if longest == width or (not force and longest > 0.75 * width):
        return slots
    if bool(slots.valid[:, :longest].all()):  # already packed (envs in lockstep): just trim
        return KVSlots(slots.k[:, :, :, :longest], slots.v[:, :, :, :longest], slots.valid[:, :longest], slots.pos[:, :longest])
    order = torch.argsort((~slots.valid).to(torch.int8), dim=1, stable=True)[:, :longest]  # [N, longest]
    N, L, H, _, dh = slots.k.shape
    kv_index = order.view(N, 1, 1, longest, 1).expand(N, L, H, longest, dh)  # [N, P'] -> [N, L, H, P', dh]
    return KVSlots(
        slots.k.gather(3, kv_index),
        slots.v.gather(3, kv_index),
        slots.valid.gather(1, order),
        slots.pos.gather(1, order),
    )


def held_tokens(slots: KVSlots) -> Tensor:
    """Valid slots per env ``[N]``."""
    return slots.valid.sum(dim=1)


# ----------------------------------------------------------------------------- blocks


class RMSNorm(nn.RMSNorm):
    """``nn.RMSNorm`` computed in fp32 and returned in the input's dtype: under bf16 autocast
    (``train.amp``) the statistics stay exact and the kernel sees matching dtypes; in fp32 the
    casts are no-ops. Same parameters as ``nn.RMSNorm``."""

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x.float(), self.normalized_shape, self.weight, self.eps).to(x.dtype)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al. 2021), half-split layout, applied per token position."""

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"head width must be even for RoPE, got {head_dim}")
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        """Rotate ``x [N, H, C, dh]`` by ``positions [N, C]``."""
        angles = positions.to(torch.float32).unsqueeze(-1) * self.inv_freq  # [N, C, dh/2]
        cos = angles.cos().unsqueeze(1).to(x.dtype)  # [N, 1, C, dh/2]
        sin = angles.sin().unsqueeze(1).to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class GatedMLP(nn.Module):
    """SwiGLU feed-forward: ``W2 (silu(W1 x) * W3 x)``."""

    def __init__(self, d_model: int, hidden: int) -> None:
        super().__init__()
        self.gate = nn.Linear(d_model, hidden, bias=False)
        self.up = nn.Linear(d_model, hidden, bias=False)
        self.down = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class DecoderBlock(nn.Module):
    """Pre-norm decoder block attending to cached slots plus the chunk itself."""

    def __init__(self, d_model: int, n_heads: int, mlp_hidden: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} must be divisible by n_heads {n_heads}")
        self.n_heads, self.head_dim = n_heads, d_model // n_heads
        self.attn_norm = RMSNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.mlp_norm = RMSNorm(d_model)
        self.mlp = GatedMLP(d_model, mlp_hidden)

    def forward(
        self, h: Tensor, rope: RotaryEmbedding, positions: Tensor, past_k: Sequence[Tensor],
        past_v: Sequence[Tensor], mask: Tensor, weights_out: list[Tensor] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``h [N, C, d]``, ``positions [N, C]``, ``past_k/v``: parts ``[N, H, P_i, dh]`` of the
        cache (keys are their concatenation, P = sum P_i), ``mask [N, 1, C, P + C]``.

        Returns the new ``h [N, C, d]`` and the chunk's rotated keys and values ``[N, H, C, dh]``.
        With ``weights_out`` the attention is computed explicitly (slower, for inspection) and its
        weights averaged over heads ``[N, C, P + C]`` are appended to that list.
        """
        q, k, v = self.project(h, rope, positions)
        past_width = sum(part.shape[2] for part in past_k)
        if weights_out is None and past_width >= max(SPLIT_READ_MIN_KEYS, SPLIT_READ_RATIO * h.shape[1]):
            att = split_attention(q, [*past_k, k], [*past_v, v], mask)  # [N, H, C, dh], no copy of the cache
        else:
            keys = torch.cat([*past_k, k], dim=2)  # [N, H, P + C, dh]
            values = torch.cat([*past_v, v], dim=2)
            if weights_out is None:
                with sdpa_kernel(SDPA_BACKENDS):
                    att = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)  # [N, H, C, dh]
            else:
                scores = (q @ keys.transpose(-1, -2)) * self.head_dim**-0.5  # [N, H, C, P + C]
                weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
                att = weights @ values  # [N, H, C, dh]
                weights_out.append(weights.mean(dim=1))
        return self.finish(h, att), k, v

    def project(self, h: Tensor, rope: RotaryEmbedding, positions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The chunk's rotated queries and keys and its values ``[N, H, C, dh]``."""
        N, C, d = h.shape
        q, k, v = self.qkv(self.attn_norm(h)).split(d, dim=-1)  # 3 x [N, C, d]
        q, k, v = (t.view(N, C, self.n_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))  # [N, H, C, dh]
        return rope(q, positions), rope(k, positions), v

    def finish(self, h: Tensor, att: Tensor) -> Tensor:
        """The block's output ``[N, C, d]`` from its input ``h`` and the attention ``att [N, H, C, dh]``."""
        N, C, d = h.shape
        h = h + self.out(att.transpose(1, 2).reshape(N, C, d))  # [N, H, C, dh] -> [N, C, d]
        return h + self.mlp(self.mlp_norm(h))


def split_attention(q: Tensor, keys: Sequence[Tensor], values: Sequence[Tensor], mask: Tensor) -> Tensor:
    """Attention of ``q [N, H, C, dh]`` over keys/values given as parts ``[N, H, P_i, dh]`` side
    by side, read where they lie (strided views of a cache are fine) instead of concatenated.

    ``mask [N, 1, C, sum P_i]`` (True = may attend) covers the parts in order; every query must
    see at least one key. Equals ``scaled_dot_product_attention(q, cat(keys), cat(values), mask)``.
    One batched matmul per head and part: a head's slice ``[N, P_i, dh]`` of an env-first cache
    is a valid ``bmm`` operand, while a 4-d matmul would copy it. Scores and softmax are fp32.
    """
    H, dh = q.shape[1], q.shape[3]
    widths = [part.shape[2] for part in keys]
    hidden = ~mask[:, 0]  # [N, C, P]
    q = q * dh**-0.5
    heads = []
    for head in range(H):
        scores = torch.cat([torch.bmm(q[:, head], part[:, head].transpose(1, 2)) for part in keys], dim=2)  # [N, C, P]
        weights = scores.float().masked_fill(hidden, float("-inf")).softmax(dim=-1).to(q.dtype)
        out = None
        for w, part in zip(weights.split(widths, dim=2), values):
            out = torch.bmm(w, part[:, head]) if out is None else out.baddbmm_(w, part[:, head])  # [N, C, dh]
        heads.append(out)
    return torch.stack(heads, dim=1)  # H x [N, C, dh] -> [N, H, C, dh]


class AttentionRecord(NamedTuple):
    """Attention of one ``TransformerStack.run`` call, averaged over heads and layers."""

    query_pos: Tensor  # [N, C]
    key_pos: Tensor  # [N, P + C]: cached slots, then the chunk itself
    key_valid: Tensor  # [N, P + C] bool
    weights: Tensor  # [N, C, P + C], rows sum to 1 over the keys a query may see


class TransformerStack(nn.Module):
    """``n_layers`` decoder blocks and a final RMSNorm, run chunk by chunk against a KV cache.

    While ``attention_log`` is a list (see :func:`record_attention`), every ``run`` appends an
    :class:`AttentionRecord` to it.
    """

    attention_log: list[AttentionRecord] | None = None

    def __init__(self, d_model: int, n_layers: int, n_heads: int, mlp_ratio: float = 4.0, rope_base: float = 10000.0):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers!r}")
        if n_heads < 1 or d_model % n_heads:
            raise ValueError(f"n_heads must divide d_model={d_model}, got {n_heads!r}")
        self.n_layers, self.n_heads, self.head_dim = n_layers, n_heads, d_model // n_heads
        mlp_hidden = max(1, int(round(mlp_ratio * d_model)))
        self.blocks = nn.ModuleList(DecoderBlock(d_model, n_heads, mlp_hidden) for _ in range(n_layers))
        self.final_norm = RMSNorm(d_model)
        self.rope = RotaryEmbedding(self.head_dim, rope_base)

    def empty_slots(self, batch_size: int, device, dtype=None) -> KVSlots:
        dtype = dtype or self.final_norm.weight.dtype
        return empty_slots(batch_size, self.n_layers, self.n_heads, self.head_dim, device, dtype)

    def random_slots(self, batch_size: int, positions: Tensor, device) -> KVSlots:
        dtype = self.final_norm.weight.dtype
        return random_slots(batch_size, self.n_layers, self.n_heads, self.head_dim, positions, device, dtype)

    def run(
        self, x: Tensor, positions: Tensor, past: KVSlots | Sequence[KVSlots], window: int | None = None,
        layer_hook: Callable[[int, Tensor, Tensor], Tensor] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Process a chunk of C new tokens per env.

        Args:
            x: ``[N, C, d]`` input tokens.
            positions: ``[N, C]`` their positions (greater than every valid cached position they may see).
            past: cached slots the chunk attends to (``pos <= own position``, valid only), or
                several caches side by side (each copied once per layer, into the keys).
            window: if set, a query at position p sees keys at positions > p - window only.
            layer_hook: called after each block as ``h = layer_hook(layer, h_in, h_out)`` with the
                block's input and output ``[N, C, d]`` (e.g. to add a memory read, HCAM).

        Returns:
            ``y [N, C, d]`` (after the final norm) and the chunk's keys and values
            ``[N, L, H, C, dh]`` for appending to a cache.
        """
        parts = (past,) if isinstance(past, KVSlots) else tuple(past)
        key_pos = torch.cat([*(p.pos for p in parts), positions], dim=1)  # [N, P + C]
        key_valid = torch.cat([*(p.valid for p in parts), torch.ones_like(positions, dtype=torch.bool)], dim=1)
        rel = positions.unsqueeze(2) - key_pos.unsqueeze(1)  # [N, C, P + C]: query pos - key pos
        allowed = key_valid.unsqueeze(1) & (rel >= 0)
        if window is not None:
            allowed = allowed & (rel < window)
        mask = allowed.unsqueeze(1)  # [N, 1, C, P + C], broadcast over heads
        weights: list[Tensor] | None = None if self.attention_log is None else []
        h, ks, vs = x, [], []
        for layer, block in enumerate(self.blocks):
            h_in = h
            past_k, past_v = [p.k[:, layer] for p in parts], [p.v[:, layer] for p in parts]
            h, k, v = block(h, self.rope, positions, past_k, past_v, mask, weights)
            if layer_hook is not None:
                h = layer_hook(layer, h_in, h)
            ks.append(k)
            vs.append(v)
        if weights is not None and self.attention_log is not None:
            mean = torch.stack(weights).mean(dim=0)  # [L, N, C, P + C] -> [N, C, P + C]
            self.attention_log.append(AttentionRecord(positions, key_pos, key_valid, mean.detach()))
        return self.final_norm(h), torch.stack(ks, dim=1), torch.stack(vs, dim=1)  # k, v [N, L, H, C, dh]


@contextmanager
def record_attention(module: nn.Module) -> Iterator[list[AttentionRecord]]:
    """Within the block, every transformer stack inside ``module`` computes its attention
    explicitly and appends an :class:`AttentionRecord` per ``run`` call to the yielded list."""
    stacks = [m for m in module.modules() if isinstance(m, TransformerStack)]
    log: list[AttentionRecord] = []
    for stack in stacks:
        stack.attention_log = log
    try:
        yield log
    finally:
        for stack in stacks:
            stack.attention_log = None


def init_transformer_weights(module: nn.Module, n_layers: int) -> None:
    """GPT-2 style init: N(0, 0.02) for linear layers, output projections scaled by 1/sqrt(2 L)."""
    for name, p in module.named_parameters():
        if p.dim() < 2:
            continue
        std = 0.02 / (2 * n_layers) ** 0.5 if name.endswith(("out.weight", "down.weight")) else 0.02
        nn.init.normal_(p, mean=0.0, std=std)
