"""Distributed PPO, DD-PPO style, on ``torch.distributed`` (launched by ``torchrun``).

``torchrun --nproc_per_node=K -m memo_rl train PRESET ...`` starts K ranks. Each rank owns
``env.num_envs`` envs, collects its own rollout and runs the PPO epochs on it; the gradients of
every minibatch are averaged across ranks by :class:`~torch.nn.parallel.DistributedDataParallel`
during the backward pass, so parameters and optimizer states stay identical on every rank.
Rank 0 writes the run directory (config, metrics, TensorBoard, checkpoints, summary); the global
step counts the env steps of all ranks (``K x env.num_envs`` per env step), so
``train.total_steps`` is the budget of the whole job. Rank r seeds its envs and action sampling
with :func:`rank_seed`; rank 0 keeps ``train.seed``, so a 1-rank job plays like a single process.

Backends: NCCL when the ranks train on CUDA (rank r on ``cuda:LOCAL_RANK``), gloo on CPU. Python
objects (checkpoint pieces, episode statistics) always travel over a gloo group, so they never
occupy GPU memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from memo_rl.config import ConfigError

__all__ = [
    "DistContext",
    "SequenceForward",
    "all_gather_objects",
    "broadcast_object",
    "check_parameters_in_sync",
    "init_distributed",
    "is_main_process",
    "launched_by_torchrun",
    "rank_seed",
    "shutdown",
    "update_model",
]

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job; the default is a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = None
    """The device this rank trains on (None: single process, the trainer picks it)."""
    object_group: Any = None
    """gloo process group for Python-object collectives (None: the default group, already gloo)."""

    @property
    def active(self) -> bool:
        """True when a process group is running (even with one rank)."""
        return self.device is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when this process was started by torchrun (or any launcher setting its variables)."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def is_main_process() -> bool:
    """Rank 0, or no launcher at all (read from the environment: usable before any setup)."""
    return os.environ.get("RANK", "0") == "0"


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``: ``seed`` itself on rank 0, an independent stream elsewhere.

    Not ``seed + rank``: gymnasium's vector envs seed env i with ``seed + i``, so rank 1 would
    replay rank 0's env 1 (and so on) with neighbouring seeds.
    """
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, dtype=np.uint32)[0])


def init_distributed(requested: bool, device_name: str, timeout_s: float = 1800.0) -> DistContext:
    """Join the torchrun job if there is one; return the single-process context otherwise.

    ``requested`` is ``run.distributed``: a job launched by torchrun is distributed whether or not
    it says so, and ``run.distributed=true`` without torchrun is a one-line error.
    """
    if not launched_by_torchrun():
        if requested:
            missing = ", ".join(v for v in TORCHRUN_VARIABLES if v not in os.environ)
            raise ConfigError(
                f"run.distributed=true needs the torchrun launcher ({missing} not set): "
                "torchrun --nproc_per_node=K -m memo_rl train PRESET ..."
            )
        return DistContext()
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    device = _rank_device(device_name, local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s),
                                device_id=device if device.type == "cuda" else None)
    object_group = dist.new_group(backend="gloo") if backend != "gloo" else None
    return DistContext(rank, world_size, local_rank, device, object_group)


def _rank_device(device_name: str, local_rank: int) -> torch.device:
    """``train.device`` for one rank: auto/cuda -> ``cuda:LOCAL_RANK`` where CUDA exists, else CPU."""
    if device_name == "cpu":
        return torch.device("cpu")
    if device_name.startswith("cuda:"):
        raise ConfigError(
            f"train.device={device_name} in a distributed job: use train.device=cuda (rank r trains on cuda:LOCAL_RANK)"
        )
    if device_name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA device is available (use auto or cpu)")
    if torch.cuda.is_available():
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices on this node "
                "(start at most that many ranks per node)"
            )
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def wait_for_all_ranks(ctx: DistContext) -> None:
    """Barrier on a successful finish: no rank tears the group down while a peer is still inside a
    collective (gloo's worker threads can abort a rank whose peer has already closed its pairs).
    Not for the error path: a rank that raised would leave its peers waiting for the timeout."""
    if ctx.active and dist.is_initialized():
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    """Leave the process group (after the last collective)."""
    if ctx.active and dist.is_initialized():
        dist.destroy_process_group()


class SequenceForward(nn.Module):
    """``agent.forward_sequence`` as a module's ``forward``, so DistributedDataParallel can wrap it
    (DDP synchronises the gradients of what runs through its ``forward``)."""

    def __init__(self, agent: nn.Module) -> None:
        super().__init__()
        self.agent = agent

    def forward(self, inputs: Any, state: Any, resets: Tensor) -> Any:
        return self.agent.forward_sequence(inputs, state, resets)


def update_model(agent: nn.Module, ctx: DistContext) -> nn.Module:
    """The module the PPO update calls: the agent's sequence forward, in DDP when distributed.

    DDP broadcasts rank 0's parameters and buffers once here, so every rank starts from the same
    weights. Buffers are constants (encoder scales, RoPE frequencies), so they are not synced at
    each forward. Cores whose minibatches may not reach every parameter (``may_skip_parameters``,
    e.g. Memo's summary queries when no segment ends inside a sequence) make DDP look for unused
    parameters; for the others that search is skipped.
    """
    model = SequenceForward(agent)
    if not ctx.active:
        return model
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    skips = bool(getattr(getattr(agent, "core", None), "may_skip_parameters", True))
    return DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False, find_unused_parameters=skips)


def all_gather_objects(ctx: DistContext, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process). Collective."""
    if not ctx.active:
        return [obj]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj, group=ctx.object_group)
    return gathered


def broadcast_object(ctx: DistContext, obj: Any = None) -> Any:
    """Rank 0's ``obj`` on every rank (``obj`` itself in a single process). Collective."""
    if not ctx.active:
        return obj
    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0, group=ctx.object_group)
    return box[0]


@torch.no_grad()
def parameter_checksum(module: nn.Module) -> list[float]:
    """Sum and sum of squares of all parameters (float64): equal on ranks holding equal weights."""
    flat = torch.cat([p.detach().double().flatten().cpu() for p in module.parameters()])  # [P]
    return [float(flat.sum()), float((flat * flat).sum())]


def check_parameters_in_sync(ctx: DistContext, module: nn.Module) -> None:
    """Raise if any rank's parameters differ from rank 0's (ranks diverged). Collective."""
    if not ctx.active or ctx.world_size == 1:
        return
    sums = all_gather_objects(ctx, parameter_checksum(module))
    differing = [rank for rank, s in enumerate(sums) if s != sums[0]]
    if differing:
        raise RuntimeError(f"distributed ranks {differing} hold parameters that differ from rank 0's: the job diverged")
