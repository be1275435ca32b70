"""Batched numba gridworlds: Dark Room and Dark Key-to-Door (single and vector versions)."""

from .single import DarkKeyToDoorEnv, DarkRoomEnv, GridworldEnv
from .vector import DarkKeyToDoorVectorEnv, DarkRoomVectorEnv, GridworldVectorEnv

__all__ = [
    "DarkKeyToDoorEnv",
    "DarkKeyToDoorVectorEnv",
    "DarkRoomEnv",
    "DarkRoomVectorEnv",
    "GridworldEnv",
    "GridworldVectorEnv",
]
