"""Single-env (``gymnasium.Env``) Dark Room and Dark Key-to-Door, built on the batched envs with
``num_envs=1`` so that both share one implementation of the dynamics.

Trials span several episodes: after an episode has ended, ``reset()`` (no seed) starts the next
episode of the same trial (a new trial if that one is over). ``reset(seed=...)``,
``reset(options={"new_trial": True})``, the very first reset and a reset in the middle of an
episode start a new trial.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from .vector import DarkKeyToDoorVectorEnv, DarkRoomVectorEnv, GridworldVectorEnv


class GridworldEnv(gym.Env):
    """Wraps a ``GridworldVectorEnv`` with one env; subclasses set ``vector_cls``."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    vector_cls: type[GridworldVectorEnv] = GridworldVectorEnv

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        self.vec = self.vector_cls(1, render_mode=render_mode, **kwargs)
        self.observation_space = self.vec.single_observation_space
        self.action_space = self.vec.single_action_space
        self.render_mode = render_mode
        self._actions = np.zeros(1, np.int64)
        self._episode_over = False  # the last step ended an episode and reset() was not called yet
        self._started = False  # reset() has been called at least once

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        new_trial = (
            seed is not None
            or not self._started
            or not self._episode_over
            or bool((options or {}).get("new_trial", False))
        )
        if new_trial:
            obs, _ = self.vec.reset(seed=seed)
        else:  # the vector env already auto-reset into the next episode
            obs = self.vec.observe()
        self._episode_over = False
        self._started = True
        trial_step = int(self.vec._state["trial_step"][0])
        return obs[0], {"trial_step": trial_step, "new_trial": new_trial or trial_step == 0}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        self._actions[0] = int(action)
        obs, rewards, terminated, truncated, info = self.vec.step(self._actions)
        term = bool(terminated[0])
        trunc = bool(truncated[0])
        step_info: dict[str, Any] = {
            "trial_end": bool(info["trial_end"][0]),
            "trial_step": int(info["trial_step"][0]),
        }
        if term or trunc:
            step_info["success"] = bool(info["success"][0])
            out = info["final_obs"][0]
            self._episode_over = True
        else:
            out = obs[0]
            self._episode_over = False  # stepping on without reset() continues in the next episode
        return out, float(rewards[0]), term, trunc, step_info

    def render(self) -> np.ndarray | None:
        """One uint8 frame [size*8, size*8, 3]."""
        frames = self.vec.render()
        return None if frames is None else frames[0]

    def get_state(self) -> dict[str, np.ndarray]:
        state = self.vec.get_state()
        state["episode_over"] = np.array(self._episode_over)
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        state = dict(state)
        episode_over = bool(state.pop("episode_over"))
        self.vec.set_state(state)
        self._episode_over = episode_over
        self._started = True


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
