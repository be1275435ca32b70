"""The GPU fast path: bf16 autocast, pinned host buffers with non-blocking copies, torch.compile.

- ``train.amp``: ``auto`` runs transformer cores under bf16 autocast on CUDA (weights, optimizer
  and losses stay fp32; the heads' outputs are cast back to fp32), ``bf16`` forces it (also on
  CPU, where it is slower but lets the path be tested), ``fp32`` never. With bf16 inputs PyTorch's
  ``scaled_dot_product_attention`` dispatches to its flash / memory-efficient kernels.
- :class:`HostToDevice`: observations, rewards and flags go from numpy into pinned host buffers
  that are reused every step, then to the GPU with ``non_blocking=True``. Reuse is safe: the next
  step overwrites a buffer only after ``actions.cpu()`` has waited for the step that read it.
- ``train.compile``: :func:`compile_agent` compiles the agent's modules in place
  (``nn.Module.compile``: parameter names, hence checkpoints, are unchanged).
"""

from __future__ import annotations

import contextlib
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from memo_rl.config import AMP_MODES

__all__ = ["AMP_MODES", "HostToDevice", "autocast", "autocast_dtype", "compile_agent", "is_transformer_core"]



def is_transformer_core(core: nn.Module) -> bool:
    """True for cores built from attention blocks (memo, rmt, fct, trxl, hcam)."""
    from memo_rl.memory.transformer import DecoderBlock

    return any(isinstance(m, DecoderBlock) for m in core.modules())


def autocast_dtype(amp: str, core: nn.Module, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` (None: full fp32)."""
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {amp!r}")
    if amp == "bf16" or (amp == "auto" and device.type == "cuda" and is_transformer_core(core)):
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on ``device`` with ``dtype``, or a no-op context for None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


class HostToDevice:
    """numpy -> device tensors through pinned buffers reused every step (CUDA); a plain
    ``torch.as_tensor`` elsewhere. One buffer per (name, dtype, shape) seen."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.pinned = device.type == "cuda"
        self._buffers: dict[tuple[str, torch.dtype, tuple[int, ...]], Tensor] = {}

    def __call__(self, array: Any, name: str, dtype: torch.dtype | None = None) -> Tensor:
        if isinstance(array, Tensor):
            return array.to(device=self.device, dtype=dtype or array.dtype)
        arr = np.asarray(array)
        host = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
        if dtype is not None and host.dtype != dtype:
            host = host.to(dtype)
        if not self.pinned:
            return host.to(self.device)
        key = (name, host.dtype, tuple(host.shape))
        buffer = self._buffers.get(key)
        if buffer is None:
            buffer = self._buffers[key] = torch.empty(host.shape, dtype=host.dtype, pin_memory=True)
        buffer.copy_(host)
        return buffer.to(self.device, non_blocking=True)

    def observation(self, obs: Any, space: gym.Space) -> Any:
        """A batched observation (dict-aware) as tensors, with the dtypes of ``obs_to_tensor``."""
        from agents.encoders import obs_to_tensor

        if not self.pinned:
            return obs_to_tensor(obs, space, self.device)
        host = obs_to_tensor(obs, space, "cpu")  # the dtype conventions, on the host
        if isinstance(host, dict):
            return {key: self(value, f"obs.{key}") for key, value in host.items()}
        return self(host, "obs")


def compile_agent(agent: nn.Module, dynamic: bool = True) -> list[str]:
    """Compile the agent's encoder, input projection, heads and the core's attention blocks in
    place; return the names of the compiled modules. The cores' own ``step``/``forward_sequence``
    hold Python control flow over segments and caches and stay eager; the blocks they call are
    compiled (recurrent cores run cuDNN/oneDNN kernels already)."""
    from memo_rl.memory.transformer import DecoderBlock

    names = ["encoder", "input_proj", "policy_head", "value_head"]
    names += [f"core.{name}" for name, m in agent.core.named_modules() if isinstance(m, DecoderBlock)]
    for name in names:
        agent.get_submodule(name).compile(dynamic=dynamic)
    return names
