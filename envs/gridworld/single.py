"""Single-env (``gymnasium.Env``) Dark Room and Dark Key-to-Door, built on the batched envs with
``num_envs=1`` so that both share one implementation of the dynamics.

Trials span several episodes: after an episode has ended, ``reset()`` (no seed) starts the next
episode of the same trial (a new trial if that one is over). ``reset(seed=...)``,
``reset(options={"new_trial": True})``, the very first reset and a reset in the middle of an
episode start a new trial.
"""

from __future__ import annotations

from envs._common import SingleEnvView

from .vector import DarkKeyToDoorVectorEnv, DarkRoomVectorEnv, GridworldVectorEnv


class GridworldEnv(SingleEnvView):
    """Wraps a ``GridworldVectorEnv`` with one env; subclasses set ``vector_cls``."""

    vector_cls: type[GridworldVectorEnv] = GridworldVectorEnv


class DarkRoomEnv(GridworldEnv):
    """Dark Room (one env). Kwargs as ``DarkRoomVectorEnv``: size=9, episode_length=20,
    trial_length=500, random_start=False, reward_once=False, render_mode=None."""

    vector_cls = DarkRoomVectorEnv

    def __init__(
        self,
        size: int = 9,
        episode_length: int = 20,
        trial_length: int = 500,
        random_start: bool = False,
        reward_once: bool = False,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(
            render_mode=render_mode, size=size, episode_length=episode_length, trial_length=trial_length,
            random_start=random_start, reward_once=reward_once,
        )  # fmt: skip


class DarkKeyToDoorEnv(GridworldEnv):
    """Dark Key-to-Door (one env). Kwargs as ``DarkKeyToDoorVectorEnv``: size=9,
    episode_length=50, trial_length=500, render_mode=None."""

    vector_cls = DarkKeyToDoorVectorEnv

    def __init__(
        self,
        size: int = 9,
        episode_length: int = 50,
        trial_length: int = 500,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(
            render_mode=render_mode, size=size, episode_length=episode_length, trial_length=trial_length
        )
