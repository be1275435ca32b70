"""Batched Dark Room and Dark Key-to-Door (Laskin et al. 2022, "In-context RL with Algorithm
Distillation"; the Key-to-Door observation follows AMAGO / Memo).

Both are ``gymnasium.vector.VectorEnv``s with same-step autoreset; all N envs are stepped in one
numba call (``_kernels.py``). A *trial* is ``trial_length`` consecutive env steps that share one
hidden task (goal, or key and door); it holds several episodes. ``info["trial_end"]`` marks the
step after which memory must be reset.
"""

from __future__ import annotations

import os
from abc import ABCMeta, abstractmethod
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs._common import BatchedState

from . import _kernels as K

_INT32_MAX = 2**31 - 1
_U64_MASK = 2**64 - 1

CELL_PX = 8
FLOOR_COLOR = np.array([30, 30, 30], np.uint8)
LINE_COLOR = np.array([55, 55, 55], np.uint8)
AGENT_COLOR = np.array([230, 40, 40], np.uint8)  # red
GOAL_COLOR = np.array([40, 200, 60], np.uint8)  # green
KEY_COLOR = np.array([250, 210, 20], np.uint8)  # yellow
DOOR_COLOR = np.array([40, 110, 250], np.uint8)  # blue


def check_int(name: str, value: Any, low: int, high: int = _INT32_MAX) -> int:
    """Return ``value`` as an int, or raise one ValueError naming it and the allowed range."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok or not low <= value <= high:
        allowed = f">= {low}" if high == _INT32_MAX else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an int {allowed}, got {value!r}")
    return int(value)


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a bool (True or False), got {value!r}")
    return bool(value)


def check_render_mode(render_mode: Any, modes: list[str]) -> str | None:
    if render_mode is not None and render_mode not in modes:
        raise ValueError(f"render_mode must be None or one of {modes}, got {render_mode!r}")
    return render_mode


def _seed_to_u64(seed: Any) -> np.uint64:
    if seed is None:
        return np.uint64(int.from_bytes(os.urandom(8), "little"))
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, (bool, np.bool_)):
        raise ValueError(f"seed must be an int or None, got {seed!r}")
    return np.uint64(int(seed) & _U64_MASK)


class GridworldVectorEnv(BatchedState, VectorEnv, metaclass=ABCMeta):
    """Shared machinery of the batched gridworlds; subclasses define the state and kernels.

    State arrays are listed in ``_state_spec`` (name -> (per-env shape, dtype)); ``get_state`` and
    ``set_state`` (de)serialise exactly these, so a restored env continues bit-identically.
    """

    metadata = {
        "autoreset_mode": AutoresetMode.SAME_STEP,
        "render_modes": ["rgb_array"],
        "render_fps": 10,
    }
    obs_dim: int = 0
    _state_spec: dict[str, tuple[tuple[int, ...], type]] = {}

    def __init__(
        self, num_envs: int, size: int, episode_length: int, trial_length: int, render_mode: str | None
    ) -> None:
        self.num_envs = check_int("num_envs", num_envs, 1)
        self.size = check_int("size", size, 2, 46340)  # size**2 must fit in int32
        self.episode_length = check_int("episode_length", episode_length, 1)
        self.trial_length = check_int("trial_length", trial_length, 1)
        self.render_mode = check_render_mode(render_mode, self.metadata["render_modes"])

        self.single_observation_space = spaces.Box(0.0, 1.0, (self.obs_dim,), np.float32)
        self.single_action_space = spaces.Discrete(K.NUM_ACTIONS)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

        n = self.num_envs
        self._state = {
            name: np.zeros((n, *shape), dtype) for name, (shape, dtype) in self._state_spec.items()
        }
        self._state["rng"] = np.zeros(n, np.uint64)
        self._started = False

    # ---- subclass hooks -------------------------------------------------------------------------
    @abstractmethod
    def _reset_kernel(self, obs: np.ndarray) -> None:
        """Implemented by each subclass."""

    @abstractmethod
    def _step_kernel(self, actions: np.ndarray, out: tuple[np.ndarray, ...]) -> int:
        """Step all envs writing into ``out``; -1, or the index of the first invalid action."""

    @abstractmethod
    def _observe_kernel(self, obs: np.ndarray) -> None:
        """Implemented by each subclass."""

    @abstractmethod
    def _render_objects(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions int32 [N, K, 2], visible bool [N, K], colours uint8 [K, 3])."""

    # ---- gymnasium API --------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a new trial (new hidden task) and its first episode in every env.

        With an int ``seed`` env i draws from its own stream derived from (seed, i); with
        ``seed=None`` the streams continue (the very first reset seeds them from OS entropy).
        """
        if seed is not None or not self._started:
            K.seed_rng(self._state["rng"], _seed_to_u64(seed))
        super().reset(seed=seed)
        obs = np.empty((self.num_envs, self.obs_dim), np.float32)
        self._reset_kernel(obs)
        self._started = True
        return obs, {"trial_step": np.zeros(self.num_envs, np.int32)}

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Step all envs; where an episode ended, ``obs`` is already the next episode's first.

        ``info``: ``final_obs`` [N, D] is the observation reached by this step before any autoreset
        (the last obs of the episode where ``_final_obs``); ``trial_end``; ``success`` (masked by
        ``_success``, valid where an episode ended); ``trial_step`` (steps done in the current
        trial, 0 right after a trial ended).
        """
        if not self._started:
            raise RuntimeError("call reset() before step()")
        n = self.num_envs
        acts = np.asarray(actions)
        if acts.dtype != np.int64:
            if acts.dtype.kind not in "iu":
                raise ValueError(
                    f"actions must be integers in [0, {K.NUM_ACTIONS - 1}], got dtype {acts.dtype}"
                )
            acts = acts.astype(np.int64)
        if acts.shape != (n,):
            if acts.size != n:
                raise ValueError(f"actions must have shape ({n},), got {acts.shape}")
            acts = acts.reshape(n)

        d = self.obs_dim
        obs = np.empty((n, d), np.float32)
        rewards = np.empty(n, np.float32)
        terminated = np.empty(n, np.bool_)
        truncated = np.empty(n, np.bool_)
        final_obs = np.empty((n, d), np.float32)
        done = np.empty(n, np.bool_)
        done2 = np.empty(n, np.bool_)
        trial_end = np.empty(n, np.bool_)
        success = np.empty(n, np.bool_)
        trial_step = np.empty(n, np.int32)
        bad = self._step_kernel(
            acts,
            (obs, rewards, terminated, truncated, final_obs, done, done2, trial_end, success, trial_step),
        )
        if bad >= 0:
            raise ValueError(f"actions must be in [0, {K.NUM_ACTIONS - 1}], got {acts[bad]} for env {bad}")
        info = {
            "final_obs": final_obs,
            "_final_obs": done,
            "trial_end": trial_end,
            "success": success,
            "_success": done2,
            "trial_step": trial_step,
        }
        return obs, rewards, terminated, truncated, info

    def observe(self) -> np.ndarray:
        """The current observation [N, D] (e.g. after ``set_state``) without stepping."""
        if not self._started:
            raise RuntimeError("call reset() (or set_state()) before observe()")
        obs = np.empty((self.num_envs, self.obs_dim), np.float32)
        self._observe_kernel(obs)
        return obs

    def render(self) -> np.ndarray | None:
        """uint8 frames [N, size*8, size*8, 3]: floor, hidden goal / key / door, agent on top."""
        if not self._ready_to_render():
            return None
        px = self.size * CELL_PX
        frames = np.empty((self.num_envs, px, px, 3), np.uint8)
        obj_pos, obj_visible, obj_color = self._render_objects()
        K.render_frames(
            frames, CELL_PX, obj_pos, obj_visible, obj_color, self._state["pos"], AGENT_COLOR,
            FLOOR_COLOR, LINE_COLOR,
        )  # fmt: skip
        return frames

    # ---- state ----------------------------------------------------------------------------------
    def _check_state(self, new: dict[str, np.ndarray]) -> None:
        for key in ("pos", "goal", "key", "door"):
            if key in new and (new[key].min() < 0 or new[key].max() >= self.size):
                raise ValueError(f"state[{key!r}] has cells outside the {self.size}x{self.size} grid")


class DarkRoomVectorEnv(GridworldVectorEnv):
    """Batched Dark Room: find a hidden goal cell; observation = own (x, y) / (size - 1).

    Args:
        num_envs: number of envs N.
        size: grid side (>= 2).
        episode_length: steps per episode; every episode is truncated after exactly this many.
        trial_length: env steps per trial; the goal is redrawn uniformly over all cells per trial.
        random_start: start each episode at a uniformly random cell instead of the centre.
        reward_once: reward only the first visit of the goal per episode (the "hard" variant)
            instead of every step that ends on it.
        render_mode: None or "rgb_array".
    """

    obs_dim = 2
    _state_spec = {
        "pos": ((2,), np.int32),
        "goal": ((2,), np.int32),
        "reached": ((), np.bool_),
        "episode_step": ((), np.int32),
        "trial_step": ((), np.int32),
    }

    def __init__(
        self,
        num_envs: int,
        size: int = 9,
        episode_length: int = 20,
        trial_length: int = 500,
        random_start: bool = False,
        reward_once: bool = False,
        render_mode: str | None = None,
    ) -> None:
        self.random_start = check_bool("random_start", random_start)
        self.reward_once = check_bool("reward_once", reward_once)
        super().__init__(num_envs, size, episode_length, trial_length, render_mode)

    def _reset_kernel(self, obs: np.ndarray) -> None:
        s = self._state
        K.dark_room_reset(
            self.size, self.random_start, s["pos"], s["goal"], s["reached"], s["episode_step"],
            s["trial_step"], s["rng"], obs,
        )  # fmt: skip

    def _step_kernel(self, actions: np.ndarray, out: tuple[np.ndarray, ...]) -> int:
        s = self._state
        return K.dark_room_step(
            actions, self.size, self.episode_length, self.trial_length, self.random_start,
            self.reward_once, s["pos"], s["goal"], s["reached"], s["episode_step"], s["trial_step"],
            s["rng"], *out,
        )  # fmt: skip

    def _observe_kernel(self, obs: np.ndarray) -> None:
        K.dark_room_observe(self.size, self._state["pos"], obs)

    def _render_objects(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = self._state["goal"][:, None, :]
        return pos, np.ones((self.num_envs, 1), np.bool_), GOAL_COLOR[None]


class DarkKeyToDoorVectorEnv(GridworldVectorEnv):
    """Batched Dark Key-to-Door: +1 for the hidden key, then +1 for the hidden door (terminates).

    Observation: [x / (size - 1), y / (size - 1), has_key, t / episode_length] with t the step
    index within the episode (as in AMAGO / Memo).

    Args:
        num_envs: number of envs N.
        size: grid side (>= 2).
        episode_length: an episode that has not reached the door is truncated after this many steps.
        trial_length: env steps per trial; key and door are redrawn per trial as two distinct cells.
        render_mode: None or "rgb_array".
    """

    obs_dim = 4
    _state_spec = {
        "pos": ((2,), np.int32),
        "key": ((2,), np.int32),
        "door": ((2,), np.int32),
        "has_key": ((), np.bool_),
        "episode_step": ((), np.int32),
        "trial_step": ((), np.int32),
    }

    def __init__(
        self,
        num_envs: int,
        size: int = 9,
        episode_length: int = 50,
        trial_length: int = 500,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(num_envs, size, episode_length, trial_length, render_mode)

    def _reset_kernel(self, obs: np.ndarray) -> None:
        s = self._state
        K.key_door_reset(
            self.size, self.episode_length, s["pos"], s["key"], s["door"], s["has_key"],
            s["episode_step"], s["trial_step"], s["rng"], obs,
        )  # fmt: skip

    def _step_kernel(self, actions: np.ndarray, out: tuple[np.ndarray, ...]) -> int:
        s = self._state
        return K.key_door_step(
            actions, self.size, self.episode_length, self.trial_length, s["pos"], s["key"], s["door"],
            s["has_key"], s["episode_step"], s["trial_step"], s["rng"], *out,
        )  # fmt: skip

    def _observe_kernel(self, obs: np.ndarray) -> None:
        s = self._state
        K.key_door_observe(self.size, self.episode_length, s["pos"], s["has_key"], s["episode_step"], obs)

    def _render_objects(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = self._state
        pos = np.stack([s["key"], s["door"]], axis=1)
        visible = np.stack([~s["has_key"], np.ones(self.num_envs, np.bool_)], axis=1)
        return pos, visible, np.stack([KEY_COLOR, DOOR_COLOR])
