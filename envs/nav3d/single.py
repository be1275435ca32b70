"""Single-env (``gymnasium.Env``) ExtObjNav and MultiON, built on the batched envs with
``num_envs=1`` so that both share one implementation of the dynamics and the renderer.

Trials span several episodes: after an episode has ended, ``reset()`` (no seed) starts the next
episode of the same trial (a new trial if that one is over). ``reset(seed=...)``,
``reset(options={"new_trial": True})``, the very first reset and a reset in the middle of an
episode start a new trial.
"""

from __future__ import annotations

from envs._common import SingleEnvView

from .vector import ExtObjNavVectorEnv, MultiONVectorEnv, Nav3DVectorEnv


class Nav3DEnv(SingleEnvView):
    """Wraps a ``Nav3DVectorEnv`` with one env; subclasses set ``vector_cls``. Frames are
    ``[P, 2P, 3]`` (first-person view | top-down map)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}
    vector_cls: type[Nav3DVectorEnv] = Nav3DVectorEnv
    episode_info = ("success", "spl", "progress")


class ExtObjNavEnv(Nav3DEnv):
    """ExtObjNav (one env). Kwargs as ``ExtObjNavVectorEnv``: rooms=3, num_objects=8,
    resolution=64, fov=90.0, episode_length=500, trial_length=4000, render_mode=None, shaping="episode", gps_frame="episode", goal_vector=False."""

    vector_cls = ExtObjNavVectorEnv

    def __init__(
        self,
        rooms: int = 3,
        num_objects: int = 8,
        resolution: int = 64,
        fov: float = 90.0,
        episode_length: int = 500,
        trial_length: int = 4000,
        render_mode: str | None = None,
        shaping: str = "episode",
        gps_frame: str = "episode",
        goal_vector: bool = False,
    ) -> None:
        super().__init__(
            render_mode=render_mode, rooms=rooms, num_objects=num_objects, resolution=resolution, fov=fov,
            episode_length=episode_length, trial_length=trial_length, shaping=shaping, gps_frame=gps_frame,
            goal_vector=goal_vector,
        )  # fmt: skip


class MultiONEnv(Nav3DEnv):
    """MultiON (one env). Kwargs as ``MultiONVectorEnv``: rooms=3, num_objects=8, num_goals=3,
    resolution=64, fov=90.0, episode_length=1000, trial_length=None, render_mode=None, gps_frame="episode", goal_vector=False."""

    vector_cls = MultiONVectorEnv

    def __init__(
        self,
        rooms: int = 3,
        num_objects: int = 8,
        num_goals: int = 3,
        resolution: int = 64,
        fov: float = 90.0,
        episode_length: int = 1000,
        trial_length: int | None = None,
        render_mode: str | None = None,
        gps_frame: str = "episode",
        goal_vector: bool = False,
    ) -> None:
        super().__init__(
            render_mode=render_mode, rooms=rooms, num_objects=num_objects, num_goals=num_goals,
            resolution=resolution, fov=fov, episode_length=episode_length, trial_length=trial_length,
            gps_frame=gps_frame, goal_vector=goal_vector,
        )  # fmt: skip
