"""Memory cores behind one protocol (see ``base`` for the contract and the state convention).

    core = build_memory_core("gru", d_model=128, n_layers=1)
    state = core.initial_state(N, device)
    y, state = core.step(x, state, resets)              # x [N, d], resets [N]
    y, state = core.forward_sequence(x, state, resets)  # x [T, N, d], resets [T, N]

``CORE_NAMES`` lists the cores registered when this package is imported; cores registered later
(``register_core``) show up in ``core_names()``.
"""

# Importing a module registers its cores; this order is the order error messages list them in.
from . import recurrent  # noqa: F401, I001
from . import full_context, memo  # noqa: F401
from . import hcam  # noqa: F401
from .base import (
    MemoryCore,
    State,
    build_memory_core,
    cat_states,
    core_names,
    core_option_names,
    detach_state,
    index_state,
    register_core,
    reset_state,
    state_batch_size,
    state_to,
)
from .full_context import FCTState, FullContextCore, TransformerXLCore
from .hcam import HCAMCore, HCAMRead, HCAMState
from .memo import MemoCore, MemoState, RMTCore
from .recurrent import GRUCore, LSTMCore, LSTMState, NoMemory
from .streaming import StreamingMemoStepper
from .transformer import AttentionRecord, KVSlots, record_attention

CORE_NAMES: tuple[str, ...] = core_names()

__all__ = [
    "CORE_NAMES",
    "AttentionRecord",
    "FCTState",
    "FullContextCore",
    "GRUCore",
    "HCAMCore",
    "HCAMRead",
    "HCAMState",
    "KVSlots",
    "LSTMCore",
    "LSTMState",
    "MemoCore",
    "MemoState",
    "MemoryCore",
    "NoMemory",
    "RMTCore",
    "TransformerXLCore",
    "State",
    "StreamingMemoStepper",
    "build_memory_core",
    "cat_states",
    "core_names",
    "core_option_names",
    "detach_state",
    "index_state",
    "record_attention",
    "register_core",
    "reset_state",
    "state_batch_size",
    "state_to",
]
