"""The memory-core protocol, the core registry and helpers for memory states.

A memory core maps a stream of embeddings of width ``d`` to a stream of embeddings of width ``d``.
It is driven in two ways that must agree:

- ``step(x [N, d], state, resets [N])``: one environment step for N envs (rollout, evaluation);
- ``forward_sequence(x [T, N, d], state, resets [T, N])``: T steps at once (PPO training).

``resets[t, n]`` True means the memory of env n is cleared *before* step t is processed (the start
of a trial). Applying ``step`` T times and ``forward_sequence`` once over the same inputs give the
same outputs and the same final state, and no output at step t depends on inputs after t.

State convention (the trainer relies on it): a state is a pytree (a tensor, or a tuple /
NamedTuple / dict / list of tensors; ``()`` for a stateless core) whose every tensor has the env
(batch) dimension FIRST. The helpers below (``index_state``, ``cat_states``, ``detach_state``,
``state_to``, ``reset_state``) therefore work for every core without knowing its internals.
"""

from __future__ import annotations

import contextlib
import inspect
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils import _pytree as pytree

State = Any
"""A memory state: a pytree of tensors with the env dimension first (``()`` when stateless)."""


# --------------------------------------------------------------------------------------------------
# State helpers
# --------------------------------------------------------------------------------------------------


def _map_tensors(fn: Callable[[Tensor], Tensor], state: State) -> State:
    """Apply ``fn`` to every tensor leaf of ``state``; non-tensor leaves are kept as they are."""
    return pytree.tree_map(lambda v: fn(v) if isinstance(v, Tensor) else v, state)


def index_state(state: State, idx: Tensor | slice | int | Sequence[int]) -> State:
    """Select envs of a state along dim 0 (``idx``: index tensor, boolean mask, slice or list).

    With an int the env dimension is dropped, exactly as ``tensor[idx]`` does.
    """
    return _map_tensors(lambda v: v[idx], state)


def detach_state(state: State) -> State:
    """Detach every tensor of a state from the autograd graph (truncates backpropagation)."""
    return _map_tensors(lambda v: v.detach(), state)


def state_to(state: State, device: torch.device | str, non_blocking: bool = False) -> State:
    """Move every tensor of a state to ``device``."""
    return _map_tensors(lambda v: v.to(device, non_blocking=non_blocking), state)


def cat_states(states: Sequence[State]) -> State:
    """Concatenate states of the same structure along the env dimension (dim 0).

    Non-tensor leaves must be equal in all states and are kept once. Tensors that differ in size
    along a later dimension are zero-padded (``False`` for bool) at the end of it first: the
    attention cores keep growable caches with a validity mask, where padding is inert. Raises
    ``ValueError`` for an empty list or for states of different structure.
    """
    if len(states) == 0:
        raise ValueError("cat_states needs at least one state")
    leaves0, spec = pytree.tree_flatten(states[0])
    all_leaves = [leaves0]
    for s in states[1:]:
        leaves, s_spec = pytree.tree_flatten(s)
        if s_spec != spec:
            raise ValueError(f"cat_states: states have different structures: {spec} vs {s_spec}")
        all_leaves.append(leaves)
    out = []
    for i, first in enumerate(leaves0):
        column = [leaves[i] for leaves in all_leaves]
        if isinstance(first, Tensor):
            out.append(torch.cat(_pad_to_common_shape(column), dim=0))
        elif all(v == first for v in column):
            out.append(first)
        else:
            raise ValueError(f"cat_states: non-tensor leaf {i} differs between states: {column}")
    return pytree.tree_unflatten(out, spec)


def _pad_to_common_shape(tensors: list[Tensor]) -> list[Tensor]:
    """Zero-pad tensors of equal rank at the end of every dimension after the first to the largest size."""
    shape = [max(t.shape[d] for t in tensors) for d in range(1, tensors[0].dim())]
    out = []
    for t in tensors:
        missing = [size - t.shape[d + 1] for d, size in enumerate(shape)]
        if any(missing):
            pad = [p for m in reversed(missing) for p in (0, m)]  # F.pad order: last dim first
            t = torch.nn.functional.pad(t, pad)
        out.append(t)
    return out


def state_batch_size(state: State) -> int | None:
    """The env dimension of a state (dim 0 of its first tensor), or None for a stateless core."""
    for leaf in pytree.tree_leaves(state):
        if isinstance(leaf, Tensor):
            return leaf.shape[0]
    return None


def resets_as_bool(resets: Tensor | None, shape: tuple[int, ...], device: torch.device) -> Tensor:
    """``resets`` as a bool tensor of ``shape`` (all False when None); raises on a wrong shape."""
    if resets is None:
        return torch.zeros(shape, dtype=torch.bool, device=device)
    if tuple(resets.shape) != shape:
        raise ValueError(f"resets must have shape {list(shape)}, got {list(resets.shape)}")
    return resets.to(device=device, dtype=torch.bool)


def span_bounds(resets: Tensor, extra_cuts: Sequence[int] = ()) -> list[int]:
    """Boundaries ``[0, ..., T]`` of the spans of ``resets [T, N]`` inside which no env resets
    (a cut before every step where any env resets), plus the cuts in ``extra_cuts``. One host sync."""
    T = resets.shape[0]
    cuts = set(torch.nonzero(resets[1:].any(dim=1)).flatten().add(1).tolist())
    cuts.update(int(c) for c in extra_cuts if 0 < c < T)
    return [0, *sorted(cuts), T]


def segment_ends(filled: Tensor, resets: Tensor, length: int) -> np.ndarray:
    """``[T, N]`` bool: True where env n's current segment (memo) or chunk (hcam) reaches ``length``
    steps at step t, given ``filled [N]`` steps already in it and ``resets [T, N]`` (which empty it)."""
    steps = filled.cpu().numpy().copy()
    resets_np = resets.cpu().numpy()
    ends = np.zeros(resets_np.shape, dtype=bool)
    for t in range(resets_np.shape[0]):  # loop over time only, vectorised over envs
        steps = np.where(resets_np[t], 0, steps) + 1
        ends[t] = steps >= length
        steps[ends[t]] = 0
    return ends


def reset_state(core: MemoryCore, state: State, resets: Tensor | None) -> State:
    """Return ``state`` with the envs where ``resets [N]`` is True replaced by the initial state."""
    return core.reset_state(state, resets)


# --------------------------------------------------------------------------------------------------
# The protocol
# --------------------------------------------------------------------------------------------------


class MemoryCore(nn.Module, metaclass=ABCMeta):
    """Base class of all memory cores (width ``d_model`` in, width ``d_model`` out).

    Subclasses implement ``initial_state`` and ``forward_sequence``; ``step`` defaults to a
    length-1 ``forward_sequence`` and may be overridden with a faster path. Constructor keyword
    arguments after ``d_model`` are the core's options (see ``core_option_names``).

    Attributes:
        d_model: width of the inputs and outputs.
        is_recurrent: True when the state is a fixed-size recurrent hidden state (gru, lstm);
            False for the memoryless core and for cores whose state is a cache of tokens.
        may_skip_parameters: True when a ``forward_sequence`` may leave some parameters out of
            the autograd graph (e.g. summary queries when no segment ends inside the sequence);
            distributed training then has DistributedDataParallel look for unused parameters.
        random_training_forward: True when ``forward_sequence`` in train mode draws random
            choices (Memo's segment lengths), so it does not replay what rollout computed; such a
            core holds one draw for several forwards inside :meth:`fixed_training_draws`.
    """

    is_recurrent: ClassVar[bool] = False
    may_skip_parameters: ClassVar[bool] = False

    def __init__(self, d_model: int) -> None:
        super().__init__()
        if int(d_model) <= 0:
            raise ValueError(f"d_model must be a positive int, got {d_model!r}")
        self.d_model = int(d_model)

    # -- to implement -----------------------------------------------------------------------------
    @abstractmethod
    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """The empty memory of ``batch_size`` envs on ``device`` (env dimension first)."""

    @abstractmethod
    def forward_sequence(self, x: Tensor, state: State, resets: Tensor | None) -> tuple[Tensor, State]:
        """Process T steps of N envs.

        Args:
            x: ``[T, N, d]`` embeddings.
            state: the memory before step 0 (from ``initial_state`` or a previous call).
            resets: ``[T, N]`` bool, True where env n's memory is cleared before step t
                (None: no resets).

        Returns:
            ``y [T, N, d]`` and the state after step T-1.
        """

    # -- defaults ---------------------------------------------------------------------------------
    def step(self, x: Tensor, state: State, resets: Tensor | None) -> tuple[Tensor, State]:
        """One environment step: ``x [N, d]``, ``resets [N]`` bool -> ``y [N, d]``, new state."""
        y, state = self.forward_sequence(
            x.unsqueeze(0), state, None if resets is None else resets.unsqueeze(0)
        )
        return y.squeeze(0), state  # [1, N, d] -> [N, d]

    def forward(self, x: Tensor, state: State, resets: Tensor | None) -> tuple[Tensor, State]:
        """Same as ``forward_sequence`` (so that module hooks and wrappers see the call)."""
        return self.forward_sequence(x, state, resets)

    @property
    def random_training_forward(self) -> bool:
        """See the class docstring; False unless a core draws random choices in training."""
        return False

    @contextlib.contextmanager
    def fixed_training_draws(self) -> Iterator[None]:
        """Inside the block every train-mode ``forward_sequence`` uses the same random draws
        (drawn on entry); a core without such draws does nothing."""
        yield

    def synthetic_state(self, batch_size: int, position: int, device: torch.device | str | None = None) -> State:
        """A state shaped like the memory after ``position`` steps of one trial (random contents).

        For benchmarks of step latency and cache size at trial positions that would take too long
        to reach by stepping. The default (fixed-size states) is ``initial_state``.
        """
        return self.initial_state(batch_size, device)

    def cached_tokens(self, state: State) -> int:
        """Tokens held in memory per env (0 for recurrent and stateless cores)."""
        return 0

    def key_step_spans(self, key_pos: Tensor, state: State) -> Tensor | None:
        """For attention cores: the trial steps ``[first, last + 1)`` each attended key stands for.

        ``key_pos [N, K]`` are the key positions of a step's attention (an ``AttentionRecord`` of
        the core's first ``run`` in ``step``), ``state`` the memory before that step. Returns
        ``[N, K, 2]`` long, or None for cores without attention (the default).
        """
        return None

    def reset_state(self, state: State, resets: Tensor | None) -> State:
        """Replace the state of envs where ``resets [N]`` is True by the initial state.

        The default works for any state whose tensors have the same shapes as
        ``initial_state``'s; cores with variable-size states override it.
        """
        if resets is None:
            return state
        leaves, spec = pytree.tree_flatten(state)
        if not any(isinstance(v, Tensor) for v in leaves):
            return state
        n = resets.shape[0]
        init_leaves, init_spec = pytree.tree_flatten(self.initial_state(n, resets.device))
        if init_spec != spec:
            raise ValueError(f"state structure {spec} differs from initial_state's {init_spec}")
        out = []
        for v, v0 in zip(leaves, init_leaves):
            if isinstance(v, Tensor):
                mask = resets.to(torch.bool).view(n, *([1] * (v.dim() - 1)))  # [N] -> [N, 1, ...]
                v = torch.where(mask, v0.to(v.dtype), v)
            out.append(v)
        return pytree.tree_unflatten(out, spec)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}"


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------

_REGISTRY: dict[str, type[MemoryCore]] = {}

C = TypeVar("C", bound=type[MemoryCore])


def register_core(name: str, cls: C | None = None) -> Any:
    """Register a ``MemoryCore`` subclass under ``name``; usable as a decorator.

    ``register_core("memo", MemoCore)`` or ``@register_core("memo")`` above the class.
    Raises ``ValueError`` if ``name`` is taken and ``TypeError`` if ``cls`` is not a MemoryCore.
    """

    def _register(core_cls: C) -> C:
        if not (isinstance(core_cls, type) and issubclass(core_cls, MemoryCore)):
            raise TypeError(f"register_core({name!r}): {core_cls!r} is not a MemoryCore subclass")
        if name in _REGISTRY:
            raise ValueError(f"memory core {name!r} is already registered ({_REGISTRY[name].__name__})")
        _REGISTRY[name] = core_cls
        return core_cls

    return _register if cls is None else _register(cls)


def core_names() -> tuple[str, ...]:
    """Names of all currently registered cores, in registration order."""
    return tuple(_REGISTRY)


def _lookup(name: str) -> type[MemoryCore]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown memory core {name!r}; choose from: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def core_option_names(name: str) -> tuple[str, ...]:
    """Option names accepted by core ``name``: its constructor's keyword parameters after ``d_model``.

    Lets a caller keep only the relevant keys of a config section before ``build_memory_core``.
    """
    params = inspect.signature(_lookup(name).__init__).parameters
    return tuple(
        p.name
        for p in params.values()
        if p.name not in ("self", "d_model")
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    )


def build_memory_core(name: str, d_model: int, **options: Any) -> MemoryCore:
    """Build the registered core ``name`` of width ``d_model`` with the given options.

    Raises ``ValueError`` for an unknown name (listing the registered ones) or an option the core
    does not accept (naming the option and listing the accepted ones).
    """
    cls = _lookup(name)
    accepted = core_option_names(name)
    unknown = sorted(k for k in options if k not in accepted)
    if unknown:
        raise ValueError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} for memory core "
            f"{name!r}; accepted options: {', '.join(accepted) if accepted else '(none)'}"
        )
    return cls(d_model, **options)
