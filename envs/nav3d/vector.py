"""Batched Nav3D: first-person multi-object navigation in procedurally generated rooms.

``ExtObjNavVectorEnv`` (find one named object per episode; many episodes share a layout within a
trial, so remembering where objects are pays off) and ``MultiONVectorEnv`` (find k objects in a given
order, MultiON, Wani et al. 2020). Both are ``gymnasium.vector.VectorEnv``s with same-step
autoreset; dynamics (``_tasks.py``), ray casting and map drawing (``_render.py``) run for all N envs
in single numba calls. See docs/envs.md for the rules, spaces and design decisions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs._common import BatchedState
from envs.gridworld._kernels import seed_rng
from envs.gridworld.vector import _seed_to_u64, check_int, check_render_mode

from . import _render as R
from . import _tasks as T
from . import _world as W

MAX_RESOLUTION = 256
MIN_RESOLUTION = 8
MAX_ROOMS = 4
SHAPING_MODES = ("episode", "trial")
GPS_FRAMES = ("episode", "trial")
RENDER_PANEL = 256  # render(): each panel is about this many pixels high


def check_fov(value: Any) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not ok or not 10.0 <= float(value) <= 150.0:
        raise ValueError(f"fov must be a number of degrees in [10, 150], got {value!r}")
    return float(value)


class Nav3DVectorEnv(BatchedState, VectorEnv):
    """Shared machinery of the two Nav3D tasks; ``task`` is ``_tasks.EXT_OBJ_NAV`` or ``MULTI_ON``.

    Observations (dict of batched arrays): ``rgb`` uint8 [N, H, W, 3], ``depth`` float32
    [N, H, W, 1] (planar depth in metres, clipped to ``MAX_DEPTH``), ``gps_compass`` float32 [N, 3]
    (position in the frame of the episode's start pose, or of the trial's first start pose with
    ``gps_frame="trial"``: x forward / y left, and heading change in [-pi, pi)),
    ``goal`` float32 [N, 8] (one-hot colour of the current goal object); with ``goal_vector=True``
    also ``goal_vector`` float32 [N, 2] (the current goal's centre in metres, x forward / y left of
    the agent: privileged, the answer to the task, for training-time prediction targets such as
    ``agent.privileged_keys`` and for probes; an agent that reads it needs no memory).
    ``get_state``/``set_state`` (de)serialise the complete dynamic state, so a restored env continues
    bit-identically.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": ["rgb_array"], "render_fps": 8}
    task: int = T.EXT_OBJ_NAV
    success_distance: float = 1.0
    goal_reward: float = 2.0
    slack: float = 0.003

    def __init__(
        self,
        num_envs: int,
        rooms: int,
        num_objects: int,
        num_goals: int,
        resolution: int,
        fov: float,
        episode_length: int,
        trial_length: int | None,
        render_mode: str | None,
        shaping: str = "episode",
        gps_frame: str = "episode",
        goal_vector: bool = False,
    ) -> None:
        self.num_envs = check_int("num_envs", num_envs, 1)
        if not isinstance(goal_vector, (bool, np.bool_)):
            raise ValueError(f"goal_vector must be true or false, got {goal_vector!r}")
        self.goal_vector = bool(goal_vector)
        if shaping not in SHAPING_MODES:
            raise ValueError(f"shaping must be one of {', '.join(SHAPING_MODES)}, got {shaping!r}")
        self.shaping = shaping
        if gps_frame not in GPS_FRAMES:
            raise ValueError(f"gps_frame must be one of {', '.join(GPS_FRAMES)}, got {gps_frame!r}")
        self.gps_frame = gps_frame
        self.rooms = check_int("rooms", rooms, 1, MAX_ROOMS)
        slots = W.SLOTS_PER_ROOM * self.rooms**2
        self.num_objects = check_int("num_objects", num_objects, 1, W.NUM_COLORS)
        if self.num_objects > slots:
            raise ValueError(
                f"num_objects must be <= {slots} ({W.SLOTS_PER_ROOM} object slots per room, rooms={self.rooms}), "
                f"got {num_objects!r}"
            )
        self.num_goals = check_int("num_goals", num_goals, 1, self.num_objects)
        self.resolution = check_int("resolution", resolution, MIN_RESOLUTION, MAX_RESOLUTION)
        self.fov = check_fov(fov)
        self.episode_length = check_int("episode_length", episode_length, 1)
        self.trial_length = 0 if trial_length is None else check_int("trial_length", trial_length, 1)
        self.render_mode = check_render_mode(render_mode, self.metadata["render_modes"])
        self.tan_half = math.tan(math.radians(self.fov) / 2)

        h = self.resolution
        g = W.grid_side(self.rooms)
        side = g * W.CELL
        self.single_observation_space = spaces.Dict(
            {
                "rgb": spaces.Box(0, 255, (h, h, 3), np.uint8),
                "depth": spaces.Box(0.0, R.MAX_DEPTH, (h, h, 1), np.float32),
                "gps_compass": spaces.Box(
                    np.array([-side, -side, -math.pi], np.float32),
                    np.array([side, side, math.pi], np.float32),
                ),
                "goal": spaces.Box(0.0, 1.0, (W.NUM_COLORS,), np.float32),
            }
        )
        if self.goal_vector:  # privileged: where the goal is, for training-time targets and probes
            reach = side * math.sqrt(2.0)  # no two points of the layout are farther apart
            self.single_observation_space["goal_vector"] = spaces.Box(-reach, reach, (2,), np.float32)
        self.single_action_space = spaces.Discrete(T.NUM_ACTIONS)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

        n, k = self.num_envs, self.num_objects
        spec = {
            "grid": ((g, g), np.uint8),
            "room_tint": ((self.rooms**2,), np.uint8),
            "obj_pos": ((k, 2), np.float64),
            "obj_color": ((k,), np.int32),
            "pose": ((3,), np.float64),
            "start": ((3,), np.float64),
            "trial_start": ((3,), np.float64),  # pose at the start of the trial's first episode
            "goal_seq": ((self.num_goals,), np.int32),
            "goal_idx": ((), np.int32),
            "path_len": ((), np.float64),
            "shortest": ((), np.float64),
            "prev_dist": ((), np.float64),
            "episode_step": ((), np.int32),
            "trial_step": ((), np.int32),
            "rng": ((), np.uint64),
        }
        self._state = {name: np.zeros((n, *shape), dtype) for name, (shape, dtype) in spec.items()}
        self._all = np.ones(n, np.bool_)
        self._started = False

    # ---- kernels --------------------------------------------------------------------------------
    def _layout_args(self) -> tuple:
        s = self._state
        return (
            self.task, self.rooms, self.success_distance, s["grid"], s["room_tint"], len(R.TINT_PALETTE),
            s["obj_pos"], s["obj_color"], s["pose"], s["start"], s["goal_seq"], s["goal_idx"], s["path_len"],
            s["shortest"], s["prev_dist"], s["episode_step"], s["trial_step"], s["rng"],
        )  # fmt: skip

    def _empty_obs(self, zeros: bool = False) -> dict[str, np.ndarray]:
        make = np.zeros if zeros else np.empty
        n, h = self.num_envs, self.resolution
        obs = {
            "rgb": make((n, h, h, 3), np.uint8),
            "depth": make((n, h, h, 1), np.float32),
            "gps_compass": make((n, 3), np.float32),
            "goal": make((n, W.NUM_COLORS), np.float32),
        }
        if self.goal_vector:
            obs["goal_vector"] = make((n, 2), np.float32)
        return obs

    def _observe(self, mask: np.ndarray, obs: dict[str, np.ndarray]) -> None:
        s = self._state
        frame = s["trial_start"] if self.gps_frame == "trial" else s["start"]  # [N, 3] origin of gps_compass
        R.observe(
            mask, self.rooms, s["grid"], s["room_tint"], s["obj_pos"], s["obj_color"], s["pose"], frame,
            s["goal_seq"], s["goal_idx"], self.tan_half, obs["rgb"], obs["depth"], obs["gps_compass"], obs["goal"],
        )  # fmt: skip
        if self.goal_vector:
            obs["goal_vector"][mask] = self._goal_in_frame(s["pose"])[mask]

    # ---- gymnasium API --------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start a new trial (new layout) and its first episode in every env.

        With an int ``seed`` env i draws from its own stream derived from (seed, i); with
        ``seed=None`` the streams continue (the very first reset seeds them from OS entropy).
        """
        if seed is not None or not self._started:
            seed_rng(self._state["rng"], _seed_to_u64(seed))
        super().reset(seed=seed)
        T.reset_all(*self._layout_args())
        self._state["trial_start"][:] = self._state["start"]
        self._started = True
        obs = self._empty_obs()
        self._observe(self._all, obs)
        return obs, {"trial_step": np.zeros(self.num_envs, np.int32)}

    def step(
        self, actions: Any
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step all envs; where an episode ended, ``obs`` is already the next episode's first.

        ``info``: ``final_obs`` (object array [N]: the observation dict reached by this step where
        ``_final_obs``, None elsewhere; gymnasium's convention for dict observations); ``trial_end``;
        ``success``, ``spl``, ``progress`` (valid where ``_success``/``_spl``/``_progress``, i.e.
        where an episode ended); ``trial_step`` (steps done in the trial, 0 right after it ended).
        """
        if not self._started:
            raise RuntimeError("call reset() before step()")
        n = self.num_envs
        acts = np.asarray(actions)
        if acts.dtype.kind not in "iu":
            raise ValueError(f"actions must be integers in [0, {T.NUM_ACTIONS - 1}], got dtype {acts.dtype}")
        if acts.size != n:
            raise ValueError(f"actions must have shape ({n},), got {acts.shape}")
        acts = acts.astype(np.int64).reshape(n)  # [n] or [n, 1] -> [n]

        rewards = np.empty(n, np.float32)
        terminated, truncated, done = np.empty(n, np.bool_), np.empty(n, np.bool_), np.empty(n, np.bool_)
        trial_end, success = np.empty(n, np.bool_), np.empty(n, np.bool_)
        spl, progress = np.empty(n, np.float32), np.empty(n, np.float32)
        trial_step = np.empty(n, np.int32)
        s = self._state
        bad = T.step(
            acts, self.task, self.episode_length, self.trial_length, self.success_distance, self.goal_reward,
            self.slack, math.atan(self.tan_half), s["grid"], s["obj_pos"], s["pose"], s["goal_seq"],
            s["goal_idx"], s["path_len"], s["shortest"], s["prev_dist"], s["episode_step"], s["trial_step"],
            rewards, terminated, truncated, done, trial_end, success, spl, progress, trial_step,
        )  # fmt: skip
        if bad >= 0:
            raise ValueError(f"actions must be in [0, {T.NUM_ACTIONS - 1}], got {acts[bad]} for env {bad}")
        final_obs = np.full(n, None, dtype=object)
        if done.any():
            final = self._empty_obs(zeros=True)
            self._observe(done, final)
            for i in np.flatnonzero(done):  # only ended envs
                final_obs[i] = {key: value[i].copy() for key, value in final.items()}
            charge_jump = self.shaping == "trial"  # charge the jump to the next episode's goal: shaping telescopes over the trial
            potential_before = s["prev_dist"].copy() if charge_jump else None  # [n] distance to the ending episode's goal
            T.autoreset(done, trial_end, *self._layout_args())
            s["trial_start"][trial_end] = s["start"][trial_end]  # a trial ends only where an episode does
            if charge_jump:
                jump = done & ~trial_end
                rewards += np.where(jump, potential_before - s["prev_dist"], 0.0).astype(np.float32)
        obs = self._empty_obs()
        self._observe(self._all, obs)
        info = {
            "final_obs": final_obs,
            "_final_obs": done,
            "trial_end": trial_end,
            "success": success,
            "_success": done,
            "spl": spl,
            "_spl": done,
            "progress": progress,
            "_progress": done,
            "trial_step": trial_step,
        }
        return obs, rewards, terminated, truncated, info

    def observe(self) -> dict[str, np.ndarray]:
        """The current observation (e.g. after ``set_state``) without stepping."""
        if not self._started:
            raise RuntimeError("call reset() (or set_state()) before observe()")
        obs = self._empty_obs()
        self._observe(self._all, obs)
        return obs

    def goal_position(self) -> np.ndarray:
        """float32 [N, 2]: the current goal object's position in the frame ``gps_compass`` is
        measured in (x forward, y left of the episode's or the trial's start pose, per ``gps_frame``):
        what an agent at the goal would read as its GPS. For probing whether a memory holds it."""
        if not self._started:
            raise RuntimeError("call reset() (or set_state()) before goal_position()")
        s = self._state
        return self._goal_in_frame(s["trial_start"] if self.gps_frame == "trial" else s["start"])

    def _goal_in_frame(self, frame: np.ndarray) -> np.ndarray:
        """float32 [N, 2]: the current goal object's centre in the frame of the poses ``frame``
        [N, 3] (x forward, y left of each pose)."""
        s = self._state
        rows = np.arange(self.num_envs)
        goal = s["goal_seq"][rows, np.minimum(s["goal_idx"], self.num_goals - 1)]  # [N]
        dx, dy = (s["obj_pos"][rows, goal] - frame[:, :2]).T  # [N, 2] -> two [N]
        cos, sin = np.cos(frame[:, 2]), np.sin(frame[:, 2])
        return np.stack([cos * dx + sin * dy, -sin * dx + cos * dy], axis=1).astype(np.float32)  # [N, 2]

    def render(self) -> np.ndarray | None:
        """uint8 frames [N, P, 2P, 3]: the first-person RGB (nearest-upscaled by an integer factor to
        P = H * max(1, 256 // H)) left, the top-down map right (walls dark, floors in their room's
        tint, objects in colour, a white ring on the current goal, the agent white with its heading)."""
        if not self._ready_to_render():
            return None
        scale = max(1, RENDER_PANEL // self.resolution)
        p = self.resolution * scale
        frames = np.empty((self.num_envs, p, 2 * p, 3), np.uint8)
        R.upscale(frames, self.observe()["rgb"], scale)
        s = self._state
        R.top_down(
            frames, p, self.rooms, s["grid"], s["room_tint"], s["obj_pos"], s["obj_color"], s["pose"],
            s["goal_seq"], s["goal_idx"],
        )  # fmt: skip
        return frames

    # ---- state ----------------------------------------------------------------------------------
    def set_state(self, state: dict[str, Any]) -> None:
        """As ``BatchedState.set_state``; a state saved before ``trial_start`` existed (checkpoints
        from before 2026-12-06) takes the episode's start as the trial's, so ``gps_frame="trial"``
        measures from there until the trial ends."""
        if "trial_start" not in state and "start" in state:
            state = {**state, "trial_start": np.asarray(state["start"])}
        super().set_state(state)

    def _check_state(self, new: dict[str, np.ndarray]) -> None:
        g = new["grid"]
        if not (g[:, 0, :].all() and g[:, -1, :].all() and g[:, :, 0].all() and g[:, :, -1].all()):
            raise ValueError("state['grid'] must keep the outer border walls (all ones)")
        if new["obj_color"].min() < 0 or new["obj_color"].max() >= W.NUM_COLORS:
            raise ValueError(f"state['obj_color'] must be colour indices in [0, {W.NUM_COLORS - 1}]")
        if new["goal_seq"].min() < 0 or new["goal_seq"].max() >= self.num_objects:
            raise ValueError(f"state['goal_seq'] must be object indices in [0, {self.num_objects - 1}]")
        if new["goal_idx"].min() < 0 or new["goal_idx"].max() >= self.num_goals:
            raise ValueError(f"state['goal_idx'] must be in [0, {self.num_goals - 1}]")


class ExtObjNavVectorEnv(Nav3DVectorEnv):
    """Batched ExtObjNav: each episode names one target object; ``stop`` within 1 m of it with the
    target in line of sight succeeds (+2); any ``stop`` ends the episode. The layout (rooms, doors,
    objects) is fixed for a trial of ``trial_length`` steps, then redrawn.

    Args:
        num_envs: number of envs N.
        rooms: the layout has rooms x rooms rooms of 3 x 3 m (1..4).
        num_objects: distinct coloured objects per layout (1..8, at most 4 per room).
        resolution: side H = W of the square RGB and depth images (8..256).
        fov: horizontal field of view in degrees (10..150).
        episode_length: episodes are truncated after this many steps.
        trial_length: env steps per trial (layout); the episode running at its end is truncated.
        render_mode: None or "rgb_array".
        shaping: "episode" (default, as ReLIC's ExtObjNav): the distance reward measures each
            episode against its own target, so it restarts at every episode start. "trial": the
            episode's last step is also charged the jump from the old target's distance to the new
            one's, so the distance rewards of a trial sum to (first distance - last distance), the
            shaping is potential-based across the trial: returns that span the trial
            (``ppo.gae_cut=trial``) get no distance reward from a ``stop`` that merely re-draws the
            start (the failed stop itself still costs nothing; docs/envs.md).
        gps_frame: origin of ``gps_compass``. "episode" (default): each episode's start pose, as
            Habitat's episodic GPS on single-episode tasks. "trial": the trial's first start pose,
            fixed while the layout is, as in ReLIC's ExtObjNav, where every episode of a trial
            shares one dataset episode and so one GPS origin: a position seen in one episode can
            be recalled as coordinates in the next.
        goal_vector: add the privileged ``goal_vector`` observation (see ``Nav3DVectorEnv``).
    """

    task = T.EXT_OBJ_NAV
    success_distance = 1.0
    goal_reward = 2.0

    def __init__(
        self,
        num_envs: int,
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
            num_envs, rooms, num_objects, 1, resolution, fov, episode_length, trial_length, render_mode, shaping,
            gps_frame, goal_vector,
        )  # fmt: skip


class MultiONVectorEnv(Nav3DVectorEnv):
    """Batched MultiON: find ``num_goals`` objects in the given order; ``stop`` within 1.5 m of the
    current goal advances to the next (+3; success after the last), ``stop`` elsewhere ends the
    episode as a failure. By default each episode is its own trial (a new layout per episode).

    Args:
        num_envs, rooms, num_objects, resolution, fov, render_mode: as ``ExtObjNavVectorEnv``.
        num_goals: goals per episode k (1..num_objects).
        episode_length: episodes are truncated after this many steps.
        trial_length: None (one episode per trial) or env steps per trial sharing a layout.
        gps_frame: as ``ExtObjNavVectorEnv`` (matters only when a trial holds several episodes).
        goal_vector: as ``ExtObjNavVectorEnv`` (the current goal of the sequence).
    """

    task = T.MULTI_ON
    success_distance = 1.5
    goal_reward = 3.0

    def __init__(
        self,
        num_envs: int,
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
            num_envs, rooms, num_objects, num_goals, resolution, fov, episode_length, trial_length, render_mode,
            gps_frame=gps_frame, goal_vector=goal_vector,
        )  # fmt: skip
