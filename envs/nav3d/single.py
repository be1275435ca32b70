"""Single-env (``gymnasium.Env``) ExtObjNav and MultiON, built on the batched envs with
``num_envs=1`` so that both share one implementation of the dynamics and the renderer.

Trials span several episodes: after an episode has ended, ``reset()`` (no seed) starts the next
episode of the same trial (a new trial if that one is over). ``reset(seed=...)``,
``reset(options={"new_trial": True})``, the very first reset and a reset in the middle of an
episode start a new trial.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from .vector import ExtObjNavVectorEnv, MultiONVectorEnv, Nav3DVectorEnv


def _row(obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {key: value[0] for key, value in obs.items()}


class Nav3DEnv(gym.Env):
    """Wraps a ``Nav3DVectorEnv`` with one env; subclasses set ``vector_cls``."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}
    vector_cls: type[Nav3DVectorEnv] = Nav3DVectorEnv

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        self.vec = self.vector_cls(1, render_mode=render_mode, **kwargs)
        self.observation_space = self.vec.single_observation_space
        self.action_space = self.vec.single_action_space
        self.render_mode = render_mode
        self._actions = np.zeros(1, np.int64)
        self._episode_over = False  # the last step ended an episode and reset() was not called yet
        self._started = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
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
        return _row(obs), {"trial_step": trial_step, "new_trial": new_trial or trial_step == 0}

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        self._actions[0] = int(action)
        obs, rewards, terminated, truncated, info = self.vec.step(self._actions)
        term, trunc = bool(terminated[0]), bool(truncated[0])
        step_info: dict[str, Any] = {
            "trial_end": bool(info["trial_end"][0]),
            "trial_step": int(info["trial_step"][0]),
        }
        if term or trunc:
            for key in ("success", "spl", "progress"):
                step_info[key] = info[key][0].item()
            out = info["final_obs"][0]
            self._episode_over = True
        else:
            out = _row(obs)
            self._episode_over = False  # stepping on without reset() continues in the next episode
        return out, float(rewards[0]), term, trunc, step_info

    def render(self) -> np.ndarray | None:
        """One uint8 frame [P, 2P, 3] (first-person view | top-down map)."""
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


class ExtObjNavEnv(Nav3DEnv):
    """ExtObjNav (one env). Kwargs as ``ExtObjNavVectorEnv``: rooms=3, num_objects=8,
    resolution=64, fov=90.0, episode_length=500, trial_length=4000, render_mode=None."""

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
    ) -> None:
        super().__init__(
            render_mode=render_mode, rooms=rooms, num_objects=num_objects, resolution=resolution, fov=fov,
            episode_length=episode_length, trial_length=trial_length,
        )  # fmt: skip


class MultiONEnv(Nav3DEnv):
    """MultiON (one env). Kwargs as ``MultiONVectorEnv``: rooms=3, num_objects=8, num_goals=3,
    resolution=64, fov=90.0, episode_length=1000, trial_length=None, render_mode=None."""

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
    ) -> None:
        super().__init__(
            render_mode=render_mode, rooms=rooms, num_objects=num_objects, num_goals=num_goals,
            resolution=resolution, fov=fov, episode_length=episode_length, trial_length=trial_length,
        )  # fmt: skip
