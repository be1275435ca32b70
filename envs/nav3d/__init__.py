"""Nav3D: embedded first-person multi-object navigation (numba ray caster; no simulator install).
ExtObjNav and MultiON tasks, single and natively batched versions; see docs/envs.md."""

from .single import ExtObjNavEnv, MultiONEnv, Nav3DEnv
from .vector import ExtObjNavVectorEnv, MultiONVectorEnv, Nav3DVectorEnv

__all__ = [
    "ExtObjNavEnv",
    "ExtObjNavVectorEnv",
    "MultiONEnv",
    "MultiONVectorEnv",
    "Nav3DEnv",
    "Nav3DVectorEnv",
]
