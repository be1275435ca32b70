"""Environments of memo-rl. Importing this package registers our envs with gymnasium under the
``memo_rl/`` namespace, each with a ``vector_entry_point`` so that
``gymnasium.make_vec(id, num_envs=N)`` returns the natively batched env and ``gymnasium.make(id)``
a single env. Entry points are strings, so importing ``envs`` stays cheap (numba loads on first use).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym


def register(env_id: str, entry_point: str, vector_entry_point: str | None = None, **kwargs: Any) -> None:
    """Register ``env_id`` unless it already is (importing or reloading twice is a no-op)."""
    if env_id in gym.registry:
        return
    gym.register(id=env_id, entry_point=entry_point, vector_entry_point=vector_entry_point, **kwargs)


register(
    "memo_rl/DarkRoom-v0",
    entry_point="envs.gridworld:DarkRoomEnv",
    vector_entry_point="envs.gridworld:DarkRoomVectorEnv",
)
register(
    "memo_rl/DarkKeyToDoor-v0",
    entry_point="envs.gridworld:DarkKeyToDoorEnv",
    vector_entry_point="envs.gridworld:DarkKeyToDoorVectorEnv",
)
register(
    "memo_rl/Nav3D-ExtObjNav-v0",
    entry_point="envs.nav3d:ExtObjNavEnv",
    vector_entry_point="envs.nav3d:ExtObjNavVectorEnv",
)
register(
    "memo_rl/Nav3D-MultiON-v0",
    entry_point="envs.nav3d:MultiONEnv",
    vector_entry_point="envs.nav3d:MultiONVectorEnv",
)

# Habitat (optional extra): the ids are registered here; habitat itself is imported only when an
# env is created (envs/habitat.py, docs/envs.md).
from envs.habitat import register_envs as _register_habitat_envs  # noqa: E402

_register_habitat_envs()
