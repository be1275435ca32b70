"""Habitat adapter: habitat-lab object-navigation envs (ExtObjNav- and MultiON-style) behind the
contract of our Nav3D envs (observation layout, actions, info keys, multi-episode trials).

habitat-sim is not on PyPI: install it with conda (``conda install habitat-sim withbullet headless
-c conda-forge -c aihabitat``), then ``pip install memo-rl[habitat]`` (habitat-lab). Both are
imported only when an env is created, so ``import envs.habitat`` works without them. The adapter
follows habitat-lab 0.3 (Hydra configs: ``habitat.get_config``, ``habitat.config.read_write``,
``habitat.Env``), the version the Memo reference code uses.

Two layers:

- Pure conversion (no habitat import; tested on habitat-format data without the simulator):
  :class:`ObservationLayout` maps habitat's sensor dict to our observation dict,
  :func:`resolve_actions` / :func:`habitat_action` map our action ids to habitat action names,
  :func:`read_metrics` / :func:`step_reward` turn habitat measures into our info keys and reward.
- :class:`HabitatEnv`: one ``gymnasium.Env`` around one ``habitat.Env`` (one simulator) that
  groups episodes into trials in one scene. The registered ids run it in gymnasium's async vector
  env (one process per simulator, same-step autoreset). See docs/envs.md (Habitat).
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs import register

__all__ = [
    "ENV_IDS",
    "TASKS",
    "DepthRange",
    "EpisodeStats",
    "HabitatEnv",
    "HabitatTask",
    "ObservationLayout",
    "check_task",
    "dataset_goal_count",
    "depth_range_from_sensors",
    "episodes_by_scene",
    "habitat_action",
    "observation_space",
    "read_metrics",
    "resolve_actions",
    "step_reward",
]

MIN_RESOLUTION = 8
MAX_RESOLUTION = 1024
GPS_BOUND = 50.0  # metres from the episode start kept in gps_compass (larger offsets are clipped)
INSTALL_HINT = (
    "install habitat-sim with conda (conda install habitat-sim withbullet headless -c conda-forge -c aihabitat; "
    "its Python 3.10+ builds are on -c aihabitat-nightly), then pip install memo-rl[habitat] (habitat-lab); "
    "see README.md"
)

# Habitat sensor uuids and action names for each of our inputs / actions, first present wins.
# Stock habitat-lab nav tasks use the first names; rearrange-based tasks (ReLIC / Memo ExtObjNav)
# put the camera on the robot's head and name their actions differently.
RGB_SENSORS = ("rgb", "head_rgb")
DEPTH_SENSORS = ("depth", "head_depth")
GPS_SENSORS = ("gps",)
COMPASS_SENSORS = ("compass",)
MOVE_ACTIONS = (
    ("move_forward", "move_forward_custom", "rearrange_move_forward"),
    ("turn_left", "turn_left_custom", "rearrange_turn_left"),
    ("turn_right", "turn_right_custom", "rearrange_turn_right"),
)
ACTION_MEANINGS = ("stop", "move_forward", "turn_left", "turn_right")  # our Discrete(4), as Nav3D


@dataclass(frozen=True)
class HabitatTask:
    """What differs between the tasks: defaults, the habitat names to look for, the reward.

    Name tuples list habitat sensor uuids / action names / measure uuids; the first one the env
    has is used. ``progress_metrics`` empty means progress = success (one goal per episode).
    """

    name: str
    config_path: str | None
    """Default habitat config (a file, or a path inside habitat-lab's config folder); None: required."""
    episode_length: int
    trial_length: int | None
    goal_sensors: tuple[str, ...]
    stop_actions: tuple[str, ...]
    success_metrics: tuple[str, ...]
    spl_metrics: tuple[str, ...]
    progress_metrics: tuple[str, ...]
    distance_metrics: tuple[str, ...]
    slack: float
    """Subtracted from every step's reward."""
    goal_reward: float
    """Added on each step that reaches a goal (ExtObjNav: success; MultiON: each sub-goal)."""


TASKS: dict[str, HabitatTask] = {
    # ExtObjNav protocol (ReLIC / Memo): many 500-step episodes per 4,096-step trial in one house;
    # reward +2 on success, slack 0.003 (Memo's run scripts). Default task: habitat-lab's own HSSD
    # ObjectNav (the stock task nearest to ExtObjNav: same houses, its own object categories).
    "extobjnav": HabitatTask(
        name="extobjnav",
        config_path="benchmark/nav/objectnav/objectnav_hssd-hab.yaml",
        episode_length=500,
        trial_length=4096,
        goal_sensors=("objectgoal", "one_hot_target_sensor"),
        stop_actions=("stop", "rearrange_stop"),
        success_metrics=("success", "custom_pddl_task_success"),
        spl_metrics=("spl", "spl_geodisc"),
        progress_metrics=(),
        distance_metrics=("distance_to_goal", "geo_disc_distance"),
        slack=0.003,
        goal_reward=2.0,
    ),
    # MultiON (Wani et al. 2020): 'found' near the current goal advances to the next; 2,500-step
    # episodes, each its own trial; reward +3 per goal, slack 0.01 (MultiON's baseline config).
    # habitat-lab ships no MultiON task: config_path must name one.
    "multion": HabitatTask(
        name="multion",
        config_path=None,
        episode_length=2500,
        trial_length=None,
        goal_sensors=("multiobjectgoal",),
        stop_actions=("found", "stop"),
        success_metrics=("success",),
        spl_metrics=("mspl", "spl"),
        progress_metrics=("percentage_success", "progress"),
        distance_metrics=("distance_to_currgoal", "distance_to_goal"),
        slack=0.01,
        goal_reward=3.0,
    ),
}
EXTOBJNAV = TASKS["extobjnav"]
ENV_IDS = {"memo_rl/Habitat-ExtObjNav-v0": "extobjnav", "memo_rl/Habitat-MultiON-v0": "multion"}


# ---- argument checks (one line each, before anything is imported) ---------------------------------


def check_task(name: Any) -> HabitatTask:
    """The task called ``name`` (case-insensitive); ValueError naming the choices otherwise."""
    task = TASKS.get(name.lower()) if isinstance(name, str) else None
    if task is None:
        raise ValueError(f"unknown habitat task {name!r} (choose from {', '.join(TASKS)})")
    return task


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok or value < low or (high is not None and value > high):
        allowed = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an int {allowed}, got {value!r}")
    return int(value)


def _check_optional_str(name: str, value: Any) -> str | None:
    if value is not None and not (isinstance(value, str) and value):
        raise ValueError(f"{name} must be a non-empty string or None, got {value!r}")
    return value


def _check_strings(name: str, values: Any, example: str, overrides: bool = False) -> tuple[str, ...]:
    """``values`` as a tuple of strings; with ``overrides``, each must look like a Hydra override
    (``key=value``, ``+key=value``, ``~key``)."""
    items = [values] if isinstance(values, str) else list(values or ())
    for item in items:
        bad_override = overrides and isinstance(item, str) and "=" not in item and not item.startswith("~")
        if not isinstance(item, str) or bad_override:
            raise ValueError(f"{name} must be a list of strings like {example!r}, got {item!r}")
    return tuple(items)


# ---- observations ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DepthRange:
    """How habitat reports depth: metres clipped to [min_depth, max_depth], then mapped linearly to
    [0, 1] when ``normalized`` (habitat-lab's ``normalize_depth``, on by default)."""

    min_depth: float
    max_depth: float
    normalized: bool

    def to_metres(self, depth: np.ndarray) -> np.ndarray:
        """float32 metres in [0, max_depth], same shape as ``depth``."""
        metres = self.min_depth + depth * (self.max_depth - self.min_depth) if self.normalized else depth
        return np.clip(metres, 0.0, self.max_depth).astype(np.float32, copy=False)


def depth_range_from_sensors(sensors: Iterable[Mapping[str, Any]]) -> DepthRange | None:
    """The range of the first depth camera (``type`` containing "Depth") among habitat sim-sensor
    configs, with habitat-lab's defaults (0 m, 10 m, normalized) for unset fields; None if none."""
    for sensor in sensors:
        if "Depth" in str(sensor.get("type", "")):
            return DepthRange(
                float(sensor.get("min_depth", 0.0)),
                float(sensor.get("max_depth", 10.0)),
                bool(sensor.get("normalize_depth", True)),
            )
    return None


def _first_present(names: Sequence[str], available: Iterable[str]) -> str | None:
    have = set(available)
    return next((name for name in names if name in have), None)


def _need_sensor(names: Sequence[str], habitat_spaces: Mapping[str, Any], what: str) -> str:
    found = _first_present(names, habitat_spaces)
    if found is None:
        raise ValueError(
            f"the habitat env has no {what} sensor (looked for {', '.join(names)}; "
            f"it has {', '.join(sorted(habitat_spaces)) or 'none'})"
        )
    return found


def observation_space(resolution: int, depth_range: DepthRange | None, num_goals: int) -> spaces.Dict:
    """Our observation space (see :class:`ObservationLayout`); no ``depth`` key when ``depth_range`` is None."""
    h = resolution
    keys: dict[str, spaces.Space] = {"rgb": spaces.Box(0, 255, (h, h, 3), np.uint8)}
    if depth_range is not None:
        keys["depth"] = spaces.Box(0.0, depth_range.max_depth, (h, h, 1), np.float32)
    keys["gps_compass"] = spaces.Box(
        np.array([-GPS_BOUND, -GPS_BOUND, -math.pi], np.float32),
        np.array([GPS_BOUND, GPS_BOUND, math.pi], np.float32),
    )
    keys["goal"] = spaces.Box(0.0, 1.0, (num_goals,), np.float32)
    return spaces.Dict(keys)


@dataclass(frozen=True)
class ObservationLayout:
    """Which habitat sensors feed which of our keys, and how their values are converted.

    Our observation (Nav3D's layout, so the same agent presets work):

    - ``rgb`` uint8 [H, W, 3] (H = W = ``resolution``);
    - ``depth`` float32 [H, W, 1], metres in [0, max_depth] (absent when ``depth`` is None);
    - ``gps_compass`` float32 [3]: metres forward and to the LEFT of the episode start, and the
      heading change in radians (left turns positive). habitat's ``gps`` is [forward, right]
      (``[-z, x]`` in the start frame), so its second value changes sign; its ``compass`` is
      already left-positive. Positions are clipped to +-``GPS_BOUND`` m;
    - ``goal`` float32 [G] one-hot: habitat's category id (``objectgoal``/``multiobjectgoal``,
      int64 [1]) expanded to G = the sensor space's high + 1, or a one-hot sensor as it is.
    """

    resolution: int
    rgb: str
    gps: str
    compass: str
    goal: str
    num_goals: int
    goal_is_one_hot: bool
    depth: str | None = None
    depth_range: DepthRange | None = None

    @classmethod
    def from_spaces(
        cls,
        habitat_spaces: Mapping[str, Any],
        task: HabitatTask,
        resolution: int,
        depth_range: DepthRange | None,
        num_goals: int | None = None,
    ) -> ObservationLayout:
        """Pick the sensors from habitat's observation spaces (``habitat.Env.observation_space.spaces``:
        uuid -> Box with ``shape``, ``dtype``, ``high``). ``depth_range`` None leaves depth out;
        ``num_goals``, when given, must match the goal sensor's width. ValueError (one line) when a
        needed sensor is missing or has the wrong shape."""
        rgb = _need_sensor(RGB_SENSORS, habitat_spaces, "RGB camera")
        _check_image_space(rgb, habitat_spaces[rgb], resolution, 3)
        depth = None
        if depth_range is not None:
            depth = _need_sensor(DEPTH_SENSORS, habitat_spaces, "depth camera")
            _check_image_space(depth, habitat_spaces[depth], resolution, 1)
        gps = _need_sensor(GPS_SENSORS, habitat_spaces, "GPS")
        if tuple(habitat_spaces[gps].shape) != (2,):
            raise ValueError(
                f"habitat sensor {gps!r} must give 2 values (dimensionality 2), got shape {habitat_spaces[gps].shape}"
            )
        compass = _need_sensor(COMPASS_SENSORS, habitat_spaces, "compass")
        goal = _need_sensor(task.goal_sensors, habitat_spaces, "goal")
        width, one_hot = _goal_encoding(goal, habitat_spaces[goal])
        if num_goals is not None and width != num_goals:
            raise ValueError(
                f"habitat goal sensor {goal!r} has {width} categories, but the env was set up for "
                f"num_goals={num_goals} (set env.kwargs.num_goals={width})"
            )
        return cls(
            resolution=resolution,
            rgb=rgb,
            gps=gps,
            compass=compass,
            goal=goal,
            num_goals=width,
            goal_is_one_hot=one_hot,
            depth=depth,
            depth_range=depth_range,
        )

    @property
    def observation_space(self) -> spaces.Dict:
        return observation_space(self.resolution, self.depth_range, self.num_goals)

    def convert(self, obs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Our observation dict from one habitat observation dict (see the class docstring)."""
        h = self.resolution
        rgb = np.asarray(self._get(obs, self.rgb))
        if rgb.dtype != np.uint8 or rgb.shape[:2] != (h, h) or rgb.ndim != 3 or rgb.shape[2] < 3:
            raise ValueError(
                f"habitat {self.rgb!r} must be uint8 [{h}, {h}, 3], got {rgb.dtype} {list(rgb.shape)}"
            )
        out = {"rgb": np.ascontiguousarray(rgb[:, :, :3])}  # RGBA -> RGB where a sensor keeps alpha
        if self.depth is not None and self.depth_range is not None:
            depth = np.asarray(self._get(obs, self.depth), np.float32)
            if depth.size != h * h:
                raise ValueError(f"habitat {self.depth!r} must be [{h}, {h}, 1], got {list(depth.shape)}")
            depth = depth.reshape(h, h, 1)  # [H, W] or [H, W, 1] -> [H, W, 1]
            out["depth"] = self.depth_range.to_metres(depth)
        gps = np.asarray(self._get(obs, self.gps), np.float32).reshape(2)  # [forward, right]
        heading = np.asarray(self._get(obs, self.compass), np.float32).reshape(())  # [1] -> scalar
        gps_compass = np.array([gps[0], -gps[1], heading], np.float32)
        np.clip(gps_compass[:2], -GPS_BOUND, GPS_BOUND, out=gps_compass[:2])
        np.clip(gps_compass[2:], -np.float32(math.pi), np.float32(math.pi), out=gps_compass[2:])
        out["gps_compass"] = gps_compass
        out["goal"] = self._goal_one_hot(self._get(obs, self.goal))
        return out

    def _get(self, obs: Mapping[str, Any], uuid: str) -> Any:
        if uuid not in obs:
            raise ValueError(f"habitat observation has no {uuid!r} (it has {', '.join(sorted(obs))})")
        return obs[uuid]

    def _goal_one_hot(self, value: Any) -> np.ndarray:
        goal = np.asarray(value)
        if self.goal_is_one_hot:
            if goal.shape != (self.num_goals,):
                raise ValueError(
                    f"habitat {self.goal!r} must be a one-hot [{self.num_goals}], got {list(goal.shape)}"
                )
            return goal.astype(np.float32)
        category = int(goal.reshape(-1)[0]) if goal.size == 1 else -1
        if not 0 <= category < self.num_goals:
            raise ValueError(
                f"habitat {self.goal!r} must be one category id in [0, {self.num_goals - 1}], got {goal.tolist()}"
            )
        one_hot = np.zeros(self.num_goals, np.float32)
        one_hot[category] = 1.0
        return one_hot


def _check_image_space(uuid: str, space: Any, resolution: int, channels: int) -> None:
    shape = tuple(space.shape)
    if len(shape) != 3 or shape[:2] != (resolution, resolution) or shape[2] < channels:
        raise ValueError(
            f"habitat sensor {uuid!r} gives images of shape {shape}, expected ({resolution}, {resolution}, {channels}) "
            f"for resolution={resolution} (a camera the config defines outside habitat.simulator.agents?)"
        )


def _goal_encoding(uuid: str, space: Any) -> tuple[int, bool]:
    """(one-hot width, whether the sensor is already one-hot) from the goal sensor's space."""
    shape, kind = tuple(space.shape), np.dtype(space.dtype).kind
    if kind in "iu" and shape == (1,):
        return int(np.max(space.high)) + 1, False  # category ids 0..high
    if kind == "f" and len(shape) == 1 and shape[0] >= 1:
        return shape[0], True
    raise ValueError(
        f"habitat goal sensor {uuid!r} must be a category id (int [1]) or a one-hot (float [G]), got {space.dtype} {shape}"
    )


# ---- actions --------------------------------------------------------------------------------------


def resolve_actions(available: Iterable[str], task: HabitatTask) -> tuple[str, ...]:
    """Habitat's names for our actions 0 stop (MultiON: found), 1 move_forward, 2 turn_left,
    3 turn_right, matched case-insensitively (MultiON's code names them FOUND, MOVE_FORWARD, ...).
    ValueError naming the missing action and the env's actions."""
    available = list(available)
    by_lower = {name.lower(): name for name in available}
    names = []
    for meaning, aliases in zip(ACTION_MEANINGS, (task.stop_actions, *MOVE_ACTIONS)):
        match = next((by_lower[alias] for alias in aliases if alias in by_lower), None)
        if match is None:
            raise ValueError(
                f"the habitat task has no {meaning} action (looked for {', '.join(aliases)}; it has {', '.join(available)})"
            )
        names.append(match)
    return tuple(names)


def habitat_action(action: Any, names: Sequence[str]) -> dict[str, Any]:
    """The ``habitat.Env.step`` argument for our action id: a fresh ``{"action": name}`` (habitat
    adds ``action_args`` to the dict it gets). Names, not indices: habitat-lab reads an index in the
    config's action order while its ``ActionSpace`` lists the actions sorted by name, and task
    configs order and extend their actions differently (look up/down, rearrange actions)."""
    a = np.asarray(action)
    if a.size != 1 or a.dtype.kind not in "iu" or not 0 <= int(a.reshape(-1)[0]) < len(names):
        raise ValueError(f"action must be an int in [0, {len(names) - 1}], got {action!r}")
    return {"action": names[int(a.reshape(-1)[0])]}


# ---- metrics and reward ---------------------------------------------------------------------------


class EpisodeStats(NamedTuple):
    """Our view of habitat's measures after a step (``distance``: to the current goal, metres)."""

    success: float
    spl: float
    progress: float
    distance: float


def _metric(metrics: Mapping[str, Any], names: Sequence[str], what: str) -> float:
    name = _first_present(names, metrics)
    if name is None:
        raise ValueError(
            f"the habitat task has no {what} measure (looked for {', '.join(names)}; it has {', '.join(sorted(metrics))})"
        )
    return float(metrics[name])


def read_metrics(metrics: Mapping[str, Any], task: HabitatTask) -> EpisodeStats:
    """Our stats from ``habitat.Env.get_metrics()``; progress falls back to success when the task
    has no progress measure. ValueError (one line) when a success, SPL or distance measure is missing."""
    success = _metric(metrics, task.success_metrics, "success")
    progress = _metric(metrics, task.progress_metrics, "progress") if task.progress_metrics else success
    spl = _metric(metrics, task.spl_metrics, "SPL")
    return EpisodeStats(success, spl, progress, _metric(metrics, task.distance_metrics, "distance-to-goal"))


def step_reward(before: EpisodeStats, after: EpisodeStats, task: HabitatTask) -> float:
    """Nav3D's reward on habitat's measures: the decrease of the distance to the current goal
    (geodesic in habitat) minus ``task.slack``, plus ``task.goal_reward`` on a step that reaches a
    goal (progress grew). On such a step the distance term is 0: the measure switches to the next
    goal, and a jump there is no movement (MultiON's reward restarts it the same way). A
    non-finite distance (goal unreachable from here) also gives 0."""
    reward = -task.slack
    if after.progress > before.progress:
        return reward + task.goal_reward
    moved = before.distance - after.distance
    return reward + moved if math.isfinite(moved) else reward


# ---- episodes -------------------------------------------------------------------------------------


def episodes_by_scene(episodes: Sequence[Any]) -> dict[str, list[int]]:
    """Indices of ``episodes`` (objects with ``scene_id``) grouped by scene, in dataset order."""
    groups: dict[str, list[int]] = {}
    for index, episode in enumerate(episodes):
        groups.setdefault(str(episode.scene_id), []).append(index)
    return groups


# ---- habitat-lab ----------------------------------------------------------------------------------


def import_habitat(plugins: Sequence[str] = ()) -> Any:
    """habitat-lab's ``habitat`` module (after importing habitat-sim and the ``plugins`` modules,
    which register custom tasks, sensors and measures); ValueError saying how to install."""
    try:
        import habitat_sim  # noqa: F401  (habitat-lab runs without it until a simulator is made)

        habitat = importlib.import_module("habitat")
    except ImportError as err:
        raise ValueError(
            f"the Habitat envs need habitat-sim and habitat-lab ({err}): {INSTALL_HINT}"
        ) from None
    if not hasattr(habitat, "Env") or not hasattr(habitat, "get_config"):
        raise ValueError(
            f"the installed 'habitat' module ({habitat.__file__}) is not habitat-lab: {INSTALL_HINT}"
        )
    for module in plugins:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ValueError(f"cannot import env.kwargs.plugins entry {module!r}: {err}") from None
    return habitat


def load_config(habitat: Any, config_path: str, overrides: Sequence[str]) -> Any:
    """``habitat.get_config(config_path, overrides)``; Hydra's many error types become one line."""
    try:
        return habitat.get_config(config_path, overrides=list(overrides))
    except Exception as err:  # noqa: BLE001  (Hydra / OmegaConf raise many types; report one line)
        text = str(err).strip().splitlines()
        raise ValueError(
            f"cannot load habitat config {config_path!r} with overrides {list(overrides)}: {text[0] if text else type(err).__name__}"
        ) from None


def sim_sensors(config: Any) -> list[Any]:
    """The camera configs of every agent (``habitat.simulator.agents.*.sim_sensors.*``)."""
    return [
        sensor for agent in config.habitat.simulator.agents.values() for sensor in agent.sim_sensors.values()
    ]


def dataset_file(config: Any) -> str:
    """The episode file the config points at (``data_path`` with ``{split}`` filled in)."""
    dataset = config.habitat.dataset
    return str(dataset.data_path).format(split=dataset.split)


def dataset_goal_count(dataset: Any) -> int | None:
    """Goal categories of an ObjectNav-style dataset (``category_to_task_category_id``: ids 0..max,
    what habitat-lab's ObjectGoalSensor reports); None for datasets without that map."""
    categories = getattr(dataset, "category_to_task_category_id", None)
    return max(categories.values()) + 1 if categories else None


# ---- the env --------------------------------------------------------------------------------------


class HabitatEnv(gym.Env):
    """One habitat-lab env (one simulator) with Nav3D's observations, actions, info and trials.

    Observations: see :class:`ObservationLayout`. Actions (``Discrete(4)``): 0 stop (MultiON:
    found), 1 forward, 2 turn left, 3 turn right, sent by name (:func:`resolve_actions`). Reward:
    :func:`step_reward`. An episode terminates on success or when habitat ends it (a stop, a wrong
    found); it is truncated after ``episode_length`` steps or when its trial ends.

    Start-up: the constructor imports habitat, composes the config and loads the episodes (enough
    for the spaces); the simulator starts at the first ``reset()``. gymnasium's async vector env
    builds one env in the main process only to read its spaces, so no simulator (GPU memory, GL
    context) is ever made there, and every worker process starts its own.

    Trials: ``trial_length`` env steps in one scene (house): a trial draws a scene uniformly, then
    plays that scene's episodes in a shuffled order (reshuffled when all were played); the episode
    running when the trial ends is truncated. ``trial_length=None``: every episode is its own trial
    (a scene drawn anew each time). habitat-lab's own episode iterator is bypassed: the next episode
    is set through ``habitat.Env.current_episode`` before each ``reset``.
    ``reset()`` after an episode ended continues the trial (a new one if it is over);
    ``reset(seed=...)``, ``reset(options={"new_trial": True})``, the first reset and a reset in
    the middle of an episode start a new trial.

    Info: every step has ``trial_end`` (this step ended the trial) and ``trial_step`` (steps done in
    the trial); the step that ends an episode also has ``success``, ``spl``, ``progress`` (MultiON:
    fraction of goals found; ExtObjNav: success) and ``distance_to_goal``. ``reset()`` reports
    ``trial_end`` (the step before it ended a trial), ``trial_step`` and ``new_trial``: with
    gymnasium's same-step autoreset the reset's info replaces the ended step's at the top level
    (the step's goes to ``final_info``), so the trainer reads the trial boundary there.

    Args:
        task: "extobjnav" or "multion" (:data:`TASKS`).
        config_path: habitat-lab config, a file or a path inside habitat-lab's config folder
            (default: the task's; MultiON has none and needs one).
        data_path: episode dataset file (``{split}`` is filled in); None keeps the config's.
        split: dataset split (e.g. "train", "val"); None keeps the config's.
        scenes_dir: scene folder; None keeps the config's.
        overrides: habitat config overrides, e.g. ``["habitat.simulator.turn_angle=30"]``.
        plugins: modules to import first (they register custom habitat tasks, sensors, measures).
        resolution: side H = W of every camera (8..1024).
        depth: include the ``depth`` observation (needs a depth camera in the config).
        num_goals: width of the goal one-hot; None: from the dataset's goal categories
            (ObjectNav-style datasets). Checked against the goal sensor when the simulator starts.
        episode_length: episodes are truncated after this many steps.
        trial_length: env steps per trial, or None (one episode per trial).
        gpu_device_id: the GPU habitat-sim renders on.
        render_mode: None or "rgb_array" (the current RGB observation).

    Defaults are ExtObjNav's; the registered MultiON id passes MultiON's (episode_length=2500,
    trial_length=None).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        task: str = "extobjnav",
        config_path: str | None = None,
        data_path: str | None = None,
        split: str | None = None,
        scenes_dir: str | None = None,
        overrides: Sequence[str] = (),
        plugins: Sequence[str] = (),
        resolution: int = 256,
        depth: bool = True,
        num_goals: int | None = None,
        episode_length: int = EXTOBJNAV.episode_length,
        trial_length: int | None = EXTOBJNAV.trial_length,
        gpu_device_id: int = 0,
        render_mode: str | None = None,
    ) -> None:
        self.task = check_task(task)
        self.resolution = _check_int("resolution", resolution, MIN_RESOLUTION, MAX_RESOLUTION)
        self.num_goals = None if num_goals is None else _check_int("num_goals", num_goals, 1)
        self.episode_length = _check_int("episode_length", episode_length, 1)
        self.trial_length = None if trial_length is None else _check_int("trial_length", trial_length, 1)
        self.gpu_device_id = _check_int("gpu_device_id", gpu_device_id, 0)
        if not isinstance(depth, (bool, np.bool_)):
            raise ValueError(f"depth must be true or false, got {depth!r}")
        self.use_depth = bool(depth)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        self.render_mode = render_mode
        self.config_path = _check_optional_str("config_path", config_path) or self.task.config_path
        if self.config_path is None:
            raise ValueError(
                f"task {self.task.name!r} needs env.kwargs.config_path: a habitat-lab config defining the task "
                "(habitat-lab ships no MultiON task; see docs/envs.md, Habitat)"
            )
        self.data_path = _check_optional_str("data_path", data_path)
        self.split = _check_optional_str("split", split)
        self.scenes_dir = _check_optional_str("scenes_dir", scenes_dir)
        self.overrides = _check_strings(
            "overrides", overrides, "habitat.simulator.turn_angle=30", overrides=True
        )
        self.plugins = _check_strings("plugins", plugins, "my_package.habitat_tasks")

        self._habitat: Any = None  # the habitat module, set by _load_task
        self._env: Any = None  # habitat.Env, started by the first reset()
        self._config, self._dataset, depth_range = self._load_task()
        goals = self.num_goals or dataset_goal_count(self._dataset)
        if goals is None:
            raise ValueError(
                f"set env.kwargs.num_goals (the goal one-hot width): the {type(self._dataset).__name__} "
                "dataset lists no goal categories"
            )
        # Our own list: habitat-lab's episode iterator shuffles the dataset's list in place when
        # habitat.Env starts (EpisodeIterator with shuffle=True), which would remap indices.
        self._episodes = list(self._dataset.episodes)
        self._scenes = episodes_by_scene(self._episodes)
        if not self._scenes:
            raise ValueError(f"the habitat episode dataset of {self.config_path!r} has no episodes")
        self._scene_ids = sorted(self._scenes)
        self._depth_range = depth_range
        self.observation_space = observation_space(self.resolution, depth_range, goals)
        self.action_space = spaces.Discrete(len(ACTION_MEANINGS))
        self.layout: ObservationLayout | None = None  # bound to habitat's sensors when the simulator starts
        self.action_names: tuple[str, ...] = ()
        self._queue: list[int] = []  # episode indices of the trial's scene still to play
        self._scene = self._scene_ids[0]
        self._stats = EpisodeStats(0.0, 0.0, 0.0, math.nan)
        self._last_rgb: np.ndarray | None = None
        self._episode_step = self._trial_step = 0
        self._started = False
        self._episode_over = False  # the last step ended an episode and reset() was not called yet
        self._trial_over = False  # ... and that episode's end also ended its trial

    # ---- habitat-lab ------------------------------------------------------------------------------

    def _load_task(self) -> tuple[Any, Any, DepthRange | None]:
        """The habitat config with our options, its episode dataset and depth range (None when
        ``depth=False``). No simulator is made here."""
        self._habitat = import_habitat(self.plugins)
        config = load_config(self._habitat, self.config_path, self.overrides)
        with self._habitat.config.read_write(config):
            h = config.habitat
            h.environment.max_episode_steps = self.episode_length
            h.simulator.habitat_sim_v0.gpu_device_id = self.gpu_device_id
            for key, value in (
                ("data_path", self.data_path),
                ("split", self.split),
                ("scenes_dir", self.scenes_dir),
            ):
                if value is not None:
                    h.dataset[key] = value
            for sensor in sim_sensors(config):
                sensor.width = sensor.height = self.resolution
        path = dataset_file(config)
        if not os.path.exists(path):
            raise ValueError(
                f"habitat episode dataset not found: {path} (task {self.task.name!r}; set env.kwargs.data_path or "
                "download the episodes, see docs/envs.md, Habitat)"
            )
        depth_range = depth_range_from_sensors(sim_sensors(config)) if self.use_depth else None
        if self.use_depth and depth_range is None:
            raise ValueError(
                f"depth=true but {self.config_path!r} has no depth camera (set env.kwargs.depth=false)"
            )
        dataset = self._habitat.make_dataset(
            id_dataset=config.habitat.dataset.type, config=config.habitat.dataset
        )
        return config, dataset, depth_range

    def _make_simulator(self) -> Any:
        """``habitat.Env`` over the loaded config and dataset: starts habitat-sim."""
        return self._habitat.Env(config=self._config, dataset=self._dataset)

    def _start_simulator(self) -> None:
        """Start the simulator and bind our observation layout and action names to its sensors and
        actions; ValueError (one line, simulator closed) when they do not fit the declared spaces."""
        env = self._make_simulator()
        try:
            layout = ObservationLayout.from_spaces(
                env.observation_space.spaces,
                self.task,
                self.resolution,
                self._depth_range,
                self.observation_space["goal"].shape[0],
            )
            names = resolve_actions(env.action_space.spaces, self.task)
        except ValueError:
            env.close()
            raise
        self._env, self.layout, self.action_names = env, layout, names

    @property
    def scene_id(self) -> str:
        """The scene (house) of the current trial."""
        return self._scene

    # ---- gymnasium API ----------------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)  # seeds self.np_random, which draws scenes and episodes
        if self._env is None:
            self._start_simulator()
        if seed is not None:
            self._env.seed(seed)
        trial_end = self._trial_over
        new_trial = (
            seed is not None
            or not self._started
            or not self._episode_over
            or self._trial_over
            or bool((options or {}).get("new_trial", False))
        )
        if new_trial:
            self._scene = self._scene_ids[int(self.np_random.integers(len(self._scene_ids)))]
            self._queue, self._trial_step = [], 0
        if not self._queue:
            self._queue = self.np_random.permutation(self._scenes[self._scene]).tolist()
        self._env.current_episode = self._episodes[self._queue.pop()]
        obs = self.layout.convert(self._env.reset())
        self._stats = read_metrics(self._env.get_metrics(), self.task)
        self._episode_step = 0
        self._started, self._episode_over, self._trial_over = True, False, False
        self._last_rgb = obs["rgb"]
        return obs, {"trial_end": trial_end, "trial_step": self._trial_step, "new_trial": new_trial}

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        if self._episode_over:
            raise RuntimeError("the episode is over: call reset() (it continues the trial)")
        obs = self.layout.convert(self._env.step(habitat_action(action, self.action_names)))
        self._episode_step += 1
        self._trial_step += 1
        stats = read_metrics(self._env.get_metrics(), self.task)
        reward = step_reward(self._stats, stats, self.task)
        self._stats = stats
        terminated = stats.success > 0 or not self._env.task.is_episode_active
        trial_full = self.trial_length is not None and self._trial_step >= self.trial_length
        truncated = not terminated and (
            self._env.episode_over or self._episode_step >= self.episode_length or trial_full
        )
        done = terminated or truncated
        self._episode_over = done
        self._trial_over = done and (self.trial_length is None or trial_full)
        info: dict[str, Any] = {"trial_end": self._trial_over, "trial_step": self._trial_step}
        if done:
            info.update(
                success=stats.success, spl=stats.spl, progress=stats.progress, distance_to_goal=stats.distance
            )
        self._last_rgb = obs["rgb"]
        return obs, float(reward), bool(terminated), bool(truncated), info

    def render(self) -> np.ndarray | None:
        """The current RGB observation, uint8 [H, W, 3]."""
        if self.render_mode is None:
            gym.logger.warn("render() called with render_mode=None; pass render_mode='rgb_array'")
            return None
        if self._last_rgb is None:
            raise RuntimeError("call reset() before render()")
        return self._last_rgb

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None


def register_envs() -> None:
    """Register ``memo_rl/Habitat-ExtObjNav-v0`` and ``memo_rl/Habitat-MultiON-v0`` (single envs,
    with their task's episode and trial lengths); a no-op for ids already registered."""
    for env_id, name in ENV_IDS.items():
        task = TASKS[name]
        register(
            env_id,
            entry_point="envs.habitat:HabitatEnv",
            kwargs={"task": name, "episode_length": task.episode_length, "trial_length": task.trial_length},
        )
