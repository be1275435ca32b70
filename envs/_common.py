"""Pieces shared by our batched envs (gridworld, nav3d) and their single-env views.

- :class:`BatchedState`: ``get_state`` / ``set_state`` (copies; same keys, shapes and dtypes) and
  the render guard of a batched env; each env adds its own range checks in ``_check_state``.
- :class:`SingleEnvView`: a ``gymnasium.Env`` over a batched env with ``num_envs=1``, so single
  and batched envs share one implementation of the dynamics. Trials span several episodes: after
  an episode has ended, ``reset()`` (no seed) starts the next episode of the same trial (a new
  trial if that one is over). ``reset(seed=...)``, ``reset(options={"new_trial": True})``, the
  very first reset and a reset in the middle of an episode start a new trial.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class BatchedState:
    """Mixin of our batched envs, which keep their whole dynamic state in ``self._state`` (a dict
    of arrays, env dimension first) and set ``self._started`` at the first reset."""

    _state: dict[str, np.ndarray]
    _started: bool
    render_mode: str | None

    def get_state(self) -> dict[str, np.ndarray]:
        """Copies of the complete dynamic state (layout/task, positions, counters, RNG streams)."""
        if not self._started:
            raise RuntimeError("call reset() before get_state()")
        return {name: arr.copy() for name, arr in self._state.items()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a state from ``get_state`` (of an env with the same num_envs and options):
        same keys, shapes and dtypes, then the env's own range checks; ValueError otherwise."""
        expected = set(self._state)
        if set(state) != expected:
            raise ValueError(f"state keys must be {sorted(expected)}, got {sorted(state)}")
        new = {}
        for name, arr in self._state.items():
            value = np.asarray(state[name])
            if value.shape != arr.shape:
                raise ValueError(f"state[{name!r}] must have shape {arr.shape}, got {value.shape}")
            new[name] = value.astype(arr.dtype, copy=True)
        self._check_state(new)
        self._state = new
        self._started = True

    def _check_state(self, new: dict[str, np.ndarray]) -> None:
        """Raise ValueError where ``new`` holds values this env cannot be in (env-specific)."""

    def _ready_to_render(self) -> bool:
        """False (with gymnasium's warning) without a render mode; RuntimeError before reset()."""
        if self.render_mode is None:
            gym.logger.warn("render() called with render_mode=None; pass render_mode='rgb_array'")
            return False
        if not self._started:
            raise RuntimeError("call reset() before render()")
        return True


def _row(obs: Any) -> Any:
    """Env 0 of a batched observation (an array, or a dict of arrays)."""
    return {key: value[0] for key, value in obs.items()} if isinstance(obs, dict) else obs[0]


class SingleEnvView(gym.Env):
    """One env of a batched env; subclasses set ``vector_cls`` and ``episode_info`` (the ``info``
    keys reported when an episode ends)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    vector_cls: type
    episode_info: tuple[str, ...] = ("success",)

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
    ) -> tuple[Any, dict[str, Any]]:
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

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
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
            for key in self.episode_info:
                step_info[key] = info[key][0].item()
            out = info["final_obs"][0]
            self._episode_over = True
        else:
            out = _row(obs)
            self._episode_over = False  # stepping on without reset() continues in the next episode
        return out, float(rewards[0]), term, trunc, step_info

    def render(self) -> np.ndarray | None:
        """One uint8 frame ``[H, W, 3]`` of the batched env's ``render()``."""
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
