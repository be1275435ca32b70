"""Tests for the Habitat adapter (envs/habitat.py).

The default suite never runs habitat-sim: nothing here is rendered or simulated. It checks

- the conversion layer on habitat-format data: values RECORDED from habitat-lab 0.3.3's own sensor
  classes without the simulator (tests/data/habitat/habitat_lab_0.3.3_sensors.json: sensor spaces,
  GPS/compass outputs for a known pose, what the RGB/depth sensors make of a given buffer; its
  "about" says how they were recorded), and arrays CONSTRUCTED with those shapes and dtypes;
- the env logic (trials, info keys, same-step autoreset in gymnasium's vector env) on a stand-in
  for ``habitat.Env`` that implements the part of habitat-lab's API the adapter calls, with toy
  1-D dynamics;
- argument validation, the missing-install message, lazy imports, registration and presets.

Tests marked ``habitat`` build real envs and run only where habitat-sim imports and the episodes
are on disk (``pytest -m habitat``); they have not run on the machine this was written on.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import envs.habitat as H
from envs.habitat import (
    TASKS,
    DepthRange,
    EpisodeStats,
    HabitatEnv,
    ObservationLayout,
    depth_range_from_sensors,
    episodes_by_scene,
    habitat_action,
    read_metrics,
    resolve_actions,
    step_reward,
)

RECORDED = json.loads(
    (Path(__file__).parent / "data" / "habitat" / "habitat_lab_0.3.3_sensors.json").read_text()
)
EXTOBJNAV, MULTION = TASKS["extobjnav"], TASKS["multion"]
STOP, FORWARD, LEFT, RIGHT = range(4)
HAVE_HABITAT_SIM = find_spec("habitat_sim") is not None


def recorded_spaces(**extra: spaces.Box) -> dict[str, spaces.Box]:
    """The recorded habitat-lab sensor spaces (32x32 cameras, 6 goal categories) as Boxes."""
    boxes = {}
    for uuid, s in RECORDED["sensor_spaces"].items():
        dtype = np.dtype(s["dtype"])
        low, high = (s["low"], s["high"]) if dtype.kind == "f" else (int(s["low"]), int(s["high"]))
        boxes[uuid] = spaces.Box(low, high, tuple(s["shape"]), dtype)
    return {**boxes, **extra}


def habitat_obs(rng: np.random.Generator, h: int = 32, category: int = 4) -> dict[str, np.ndarray]:
    """A constructed observation with habitat-lab's uuids, shapes and dtypes (normalized depth)."""
    return {
        "rgb": rng.integers(0, 256, (h, h, 3), dtype=np.uint8),
        "depth": rng.random((h, h, 1), dtype=np.float32),
        "gps": rng.normal(0, 3, 2).astype(np.float32),
        "compass": rng.uniform(-math.pi, math.pi, 1).astype(np.float32),
        "objectgoal": np.array([category], np.int64),
    }


HSSD_DEPTH = DepthRange(0.5, 5.0, True)  # the stock HSSD ObjectNav depth camera (recorded)


# ---- observations -------------------------------------------------------------------------------


def test_layout_from_recorded_spaces_matches_nav3d():
    layout = ObservationLayout.from_spaces(recorded_spaces(), EXTOBJNAV, 32, HSSD_DEPTH)
    assert (layout.rgb, layout.depth, layout.gps, layout.compass, layout.goal) == (
        "rgb", "depth", "gps", "compass", "objectgoal"
    )  # fmt: skip
    assert layout.num_goals == 6 and not layout.goal_is_one_hot  # ObjectGoalSensor high 5 -> ids 0..5
    space = layout.observation_space
    from envs.nav3d import ExtObjNavVectorEnv

    nav3d = ExtObjNavVectorEnv(1, resolution=32).single_observation_space
    assert set(space) == set(nav3d) == {"rgb", "depth", "gps_compass", "goal"}
    for key in space:  # same dtypes and ranks, so the same agent presets apply
        assert space[key].dtype == nav3d[key].dtype and len(space[key].shape) == len(nav3d[key].shape)
    assert space["rgb"].shape == (32, 32, 3) and space["depth"].shape == (32, 32, 1)
    assert space["depth"].high.max() == 5.0 and space["goal"].shape == (6,)


def test_recorded_sensor_outputs_convert_to_our_conventions():
    """Depth back to metres, RGB as it is, GPS to (forward, LEFT), compass left-positive, goal one-hot."""
    probe = RECORDED["depth_probe"]
    assert probe["observation_dtype"] == "float32" and probe["observation_shape"] == [2, 2, 1]
    boxes = recorded_spaces(
        rgb=spaces.Box(0, 255, (2, 2, 3), np.uint8), depth=spaces.Box(0.0, 1.0, (2, 2, 1), np.float32)
    )
    layout = ObservationLayout.from_spaces(boxes, EXTOBJNAV, 2, HSSD_DEPTH)
    obs = {
        "rgb": np.array(RECORDED["rgb_probe"]["observation"], np.uint8),
        "depth": np.array(probe["observation"], np.float32),
        "gps": np.array(RECORDED["pose_probe"]["gps"], np.float32),
        "compass": np.array(RECORDED["pose_probe"]["compass"], np.float32),
        "objectgoal": np.array([4], np.int64),
    }
    out = layout.convert(obs)
    np.testing.assert_array_equal(out["rgb"], obs["rgb"])
    # rendered 0.2 / 0.5 / 2.75 / 9.0 m; habitat clips to [0.5, 5] m before normalizing
    np.testing.assert_allclose(out["depth"][:, :, 0], [[0.5, 0.5], [2.75, 5.0]], atol=1e-6)
    # the agent stands 2 m ahead and 1 m to the left of its start, turned 30 degrees left
    np.testing.assert_allclose(out["gps_compass"], [2.0, 1.0, math.radians(30)], atol=1e-6)
    np.testing.assert_array_equal(out["goal"], np.eye(6, dtype=np.float32)[4])
    assert out in layout.observation_space


def test_constructed_observations_convert_into_the_space():
    layout = ObservationLayout.from_spaces(recorded_spaces(), EXTOBJNAV, 32, HSSD_DEPTH)
    rng = np.random.default_rng(0)
    for category in range(6):
        obs = habitat_obs(rng, category=category)
        out = layout.convert(obs)
        assert {k: (v.dtype, v.shape) for k, v in out.items()} == {
            "rgb": (np.uint8, (32, 32, 3)),
            "depth": (np.float32, (32, 32, 1)),
            "gps_compass": (np.float32, (3,)),
            "goal": (np.float32, (6,)),
        }
        assert out in layout.observation_space
        np.testing.assert_array_equal(out["rgb"], obs["rgb"])
        np.testing.assert_allclose(out["depth"], 0.5 + 4.5 * obs["depth"], rtol=1e-6)
        assert 0.5 <= out["depth"].min() and out["depth"].max() <= 5.0
        np.testing.assert_allclose(out["gps_compass"], [obs["gps"][0], -obs["gps"][1], obs["compass"][0]])
        assert out["goal"].sum() == 1.0 and out["goal"][category] == 1.0
    far = {**habitat_obs(rng), "gps": np.array([80.0, -120.0], np.float32)}
    assert layout.convert(far)["gps_compass"][:2].tolist() == [50.0, 50.0]  # clipped to GPS_BOUND
    metres = DepthRange(0.5, 5.0, False)  # normalize_depth=False: habitat reports metres already
    raw = np.array([[[0.5]], [[4.0]]], np.float32)
    np.testing.assert_array_equal(metres.to_metres(raw), raw)


def test_rearrange_style_and_multion_sensors():
    """ReLIC / Memo ExtObjNav configs: head camera, a one-hot target sensor, no depth camera; MultiON:
    the current goal's category id in ``multiobjectgoal``."""
    boxes = recorded_spaces()
    memo = {
        "head_rgb": boxes["rgb"],
        "gps": boxes["gps"],
        "compass": boxes["compass"],
        "one_hot_target_sensor": spaces.Box(0, 1, (20,), np.float32),
    }
    layout = ObservationLayout.from_spaces(memo, EXTOBJNAV, 32, None)
    assert layout.goal_is_one_hot and layout.num_goals == 20 and layout.depth is None
    assert set(layout.observation_space) == {"rgb", "gps_compass", "goal"}
    obs = {
        **{k: v for k, v in habitat_obs(np.random.default_rng(1)).items() if k in memo},
        "head_rgb": np.zeros((32, 32, 3), np.uint8),
    }
    obs["one_hot_target_sensor"] = np.eye(20)[7]  # float64, as that sensor builds it
    out = layout.convert(obs)
    assert out["goal"].dtype == np.float32 and out["goal"].argmax() == 7 and out in layout.observation_space

    multion = {**boxes, "multiobjectgoal": spaces.Box(0, 7, (1,), np.int64)}
    del multion["objectgoal"]
    layout = ObservationLayout.from_spaces(multion, MULTION, 32, HSSD_DEPTH)
    assert layout.goal == "multiobjectgoal" and layout.num_goals == 8
    obs = {**habitat_obs(np.random.default_rng(2)), "multiobjectgoal": np.array([7], np.int64)}
    assert layout.convert(obs)["goal"].argmax() == 7


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda b: b.pop("objectgoal"), "the habitat env has no goal sensor (looked for objectgoal, one_hot_target_sensor; it has compass, depth, gps, rgb)"),
        (lambda b: b.pop("depth"), "the habitat env has no depth camera sensor (looked for depth, head_depth; it has compass, gps, objectgoal, rgb)"),
        (lambda b: b.update(rgb=spaces.Box(0, 255, (480, 640, 3), np.uint8)), "habitat sensor 'rgb' gives images of shape (480, 640, 3), expected (32, 32, 3) for resolution=32"),
        (lambda b: b.update(gps=spaces.Box(-1.0, 1.0, (3,), np.float32)), "habitat sensor 'gps' must give 2 values (dimensionality 2), got shape (3,)"),
        (lambda b: b.update(objectgoal=spaces.Box(0, 5, (2,), np.int64)), "habitat goal sensor 'objectgoal' must be a category id (int [1]) or a one-hot (float [G]), got int64 (2,)"),
    ],
)  # fmt: skip
def test_layout_errors_are_one_line(change, message):
    boxes = recorded_spaces()
    change(boxes)
    with pytest.raises(ValueError) as excinfo:
        ObservationLayout.from_spaces(boxes, EXTOBJNAV, 32, HSSD_DEPTH)
    assert str(excinfo.value).startswith(message) and "\n" not in str(excinfo.value)


def test_bad_observations_are_one_line():
    layout = ObservationLayout.from_spaces(recorded_spaces(), EXTOBJNAV, 32, HSSD_DEPTH)
    obs = habitat_obs(np.random.default_rng(3))
    cases = [
        ({**obs, "objectgoal": np.array([6], np.int64)}, "habitat 'objectgoal' must be one category id in [0, 5], got [6]"),
        ({**obs, "rgb": np.zeros((16, 16, 3), np.uint8)}, "habitat 'rgb' must be uint8 [32, 32, 3], got uint8 [16, 16, 3]"),
        ({k: v for k, v in obs.items() if k != "compass"}, "habitat observation has no 'compass' (it has depth, gps, objectgoal, rgb)"),
    ]  # fmt: skip
    for bad, message in cases:
        with pytest.raises(ValueError) as excinfo:
            layout.convert(bad)
        assert str(excinfo.value) == message


def test_depth_range_from_recorded_config():
    recorded = RECORDED["objectnav_hssd"]["depth_sensor"]
    rgb = {"type": "HabitatSimRGBSensor", "width": 640, "height": 480}
    assert depth_range_from_sensors([rgb, recorded]) == DepthRange(0.5, 5.0, True)
    assert depth_range_from_sensors([rgb, {"type": "HabitatSimDepthSensor"}]) == DepthRange(0.0, 10.0, True)
    assert depth_range_from_sensors([rgb]) is None


# ---- actions ------------------------------------------------------------------------------------


def test_actions_go_by_name_not_by_habitat_index():
    keys = RECORDED["objectnav_hssd"]["action_space_keys"]  # habitat's ActionSpace sorts the names
    assert keys.index("stop") == 3
    names = resolve_actions(keys, EXTOBJNAV)
    assert names == ("stop", "move_forward", "turn_left", "turn_right")
    assert [habitat_action(a, names) for a in range(4)] == [{"action": n} for n in names]
    assert habitat_action(np.int64(2), names) == {"action": "turn_left"}
    assert habitat_action(np.array([3]), names) == {"action": "turn_right"}
    first, second = habitat_action(0, names), habitat_action(0, names)
    assert first is not second  # habitat adds action_args to the dict it gets
    relic = [
        "rearrange_stop",
        "move_forward_custom",
        "turn_left_custom",
        "turn_right_custom",
        "rearrange_look_up",
    ]
    assert resolve_actions(relic, EXTOBJNAV) == tuple(relic[:4])
    multion = ["FOUND", "MOVE_FORWARD", "TURN_LEFT", "TURN_RIGHT"]  # MultiON's POSSIBLE_ACTIONS
    assert resolve_actions(multion, MULTION) == tuple(multion)


def test_bad_actions_are_one_line():
    names = resolve_actions(RECORDED["objectnav_hssd"]["action_space_keys"], EXTOBJNAV)
    for bad in (4, -1, 1.0, "stop", [0, 1], True):
        with pytest.raises(ValueError) as excinfo:
            habitat_action(bad, names)
        assert str(excinfo.value) == f"action must be an int in [0, 3], got {bad!r}"
    with pytest.raises(ValueError) as excinfo:
        resolve_actions(["move_forward", "turn_left", "turn_right"], MULTION)
    assert str(excinfo.value) == (
        "the habitat task has no stop action (looked for found, stop; it has move_forward, turn_left, turn_right)"
    )


# ---- metrics and reward ---------------------------------------------------------------------------


def test_metrics_map_to_our_info_keys():
    objectnav = dict.fromkeys(RECORDED["objectnav_hssd"]["measurements"], 0.0)
    objectnav.update(distance_to_goal=3.25, success=1.0, spl=0.6)
    assert read_metrics(objectnav, EXTOBJNAV) == EpisodeStats(
        success=1.0, spl=0.6, progress=1.0, distance=3.25
    )
    relic = {"custom_pddl_task_success": True, "spl_geodisc": 0.4, "geo_disc_distance": 1.5, "num_steps": 12}
    assert read_metrics(relic, EXTOBJNAV) == EpisodeStats(1.0, 0.4, 1.0, 1.5)
    multion = {
        "success": 0,
        "sub_success": 1,
        "percentage_success": 2 / 3,
        "mspl": 0.0,
        "spl": 0.0,
        "distance_to_currgoal": 4.0,
    }
    assert read_metrics(multion, MULTION) == EpisodeStats(0.0, 0.0, 2 / 3, 4.0)
    with pytest.raises(ValueError) as excinfo:
        read_metrics({"success": 1.0, "spl": 1.0}, EXTOBJNAV)
    assert str(excinfo.value) == (
        "the habitat task has no distance-to-goal measure (looked for distance_to_goal, geo_disc_distance; it has spl, success)"
    )


def test_step_reward():
    before = EpisodeStats(0.0, 0.0, 0.0, 4.0)
    assert step_reward(before, EpisodeStats(0.0, 0.0, 0.0, 3.75), EXTOBJNAV) == pytest.approx(0.25 - 0.003)
    assert step_reward(before, EpisodeStats(0.0, 0.0, 0.0, 4.25), EXTOBJNAV) == pytest.approx(-0.25 - 0.003)
    assert step_reward(before, EpisodeStats(1.0, 0.8, 1.0, 4.0), EXTOBJNAV) == pytest.approx(2.0 - 0.003)
    # MultiON: a sub-goal found pays 3 and the distance jump to the next goal is not movement
    assert step_reward(before, EpisodeStats(0.0, 0.0, 1 / 3, 9.0), MULTION) == pytest.approx(3.0 - 0.01)
    assert step_reward(before, EpisodeStats(0.0, 0.0, 0.0, math.inf), MULTION) == pytest.approx(-0.01)


def test_episodes_by_scene():
    episodes = [SimpleNamespace(scene_id=s) for s in ("b.glb", "a.glb", "b.glb", "c.glb", "a.glb")]
    assert episodes_by_scene(episodes) == {"b.glb": [0, 2], "a.glb": [1, 4], "c.glb": [3]}


# ---- argument validation and installation ----------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(task="pointnav"), "unknown habitat task 'pointnav' (choose from extobjnav, multion)"),
        (dict(task=None), "unknown habitat task None (choose from extobjnav, multion)"),
        (dict(resolution=0), "resolution must be an int in [8, 1024], got 0"),
        (dict(resolution=4096), "resolution must be an int in [8, 1024], got 4096"),
        (dict(resolution=64.0), "resolution must be an int in [8, 1024], got 64.0"),
        (dict(resolution="256"), "resolution must be an int in [8, 1024], got '256'"),
        (dict(resolution=True), "resolution must be an int in [8, 1024], got True"),
        (dict(episode_length=0), "episode_length must be an int >= 1, got 0"),
        (dict(trial_length=0), "trial_length must be an int >= 1, got 0"),
        (dict(depth="yes"), "depth must be true or false, got 'yes'"),
        (dict(render_mode="human"), "render_mode must be None or one of ['rgb_array'], got 'human'"),
        (dict(overrides=["turn_angle"]), "overrides must be a list of strings like 'habitat.simulator.turn_angle=30', got 'turn_angle'"),
        (dict(plugins=[3]), "plugins must be a list of strings like 'my_package.habitat_tasks', got 3"),
        (dict(task="multion"), "task 'multion' needs env.kwargs.config_path: a habitat-lab config defining the task (habitat-lab ships no MultiON task; see docs/envs.md, Habitat)"),
    ],
)  # fmt: skip
def test_bad_arguments_are_one_line(kwargs, message):
    """Checked before habitat is imported, so these hold with or without it installed."""
    with pytest.raises(ValueError) as excinfo:
        HabitatEnv(**kwargs)
    assert str(excinfo.value) == message


@pytest.mark.skipif(HAVE_HABITAT_SIM, reason="habitat-sim is installed here")
def test_without_habitat_one_line_says_how_to_install(tmp_path, capsys):
    with pytest.raises(ValueError) as excinfo:
        HabitatEnv()
    text = str(excinfo.value)
    assert "\n" not in text and text.startswith(
        "the Habitat envs need habitat-sim and habitat-lab (No module named"
    )
    assert "conda install habitat-sim withbullet headless -c conda-forge -c aihabitat" in text
    assert "pip install memo-rl[habitat]" in text

    from memo_rl.cli import main

    run_dir = tmp_path / "run"
    assert main(["train", "habitat_extobjnav_gru", "env.num_envs=4", f"run.dir={run_dir}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and "memo_rl/Habitat-ExtObjNav-v0" in err[0]
        and "pip install memo-rl[habitat]" in err[0]
    )


def test_import_is_lazy():
    code = (
        "import sys, envs.habitat; "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('habitat', 'habitat_sim', 'magnum')); "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_registration_and_presets():
    from memo_rl.config import build_config
    from memo_rl.registry import accepted_kwargs

    for env_id, name in H.ENV_IDS.items():
        spec = gym.spec(env_id)
        task = TASKS[name]
        assert spec.entry_point == "envs.habitat:HabitatEnv" and spec.vector_entry_point is None
        assert spec.kwargs == {
            "task": name,
            "episode_length": task.episode_length,
            "trial_length": task.trial_length,
        }
    assert {"task", "config_path", "data_path", "resolution", "trial_length"} <= set(
        accepted_kwargs("memo_rl/Habitat-MultiON-v0")
    )
    cfg = build_config("habitat_extobjnav_gru")
    assert cfg.env.id == "memo_rl/Habitat-ExtObjNav-v0" and cfg.env.vectorization == "async"
    assert (
        cfg.env.kwargs["resolution"] == 256
        and cfg.env.kwargs["trial_length"] == 4096
        and cfg.memory.core == "gru"
    )
    cfg = build_config("habitat_multion_gru")
    assert cfg.env.id == "memo_rl/Habitat-MultiON-v0" and cfg.env.vectorization == "async"
    assert cfg.env.kwargs["trial_length"] is None and cfg.env.kwargs["episode_length"] == 2500


# ---- the env, on a stand-in for habitat.Env ---------------------------------------------------------


class StandInDataset:
    """Episodes in 3 scenes, 4 each, with ObjectNav's goal-category map (6 categories)."""

    category_to_task_category_id = {"chair": 0, "bed": 1, "plant": 2, "toilet": 3, "tv_monitor": 4, "sofa": 5}

    def __init__(self, scenes: int = 3, per_scene: int = 4) -> None:
        self.episodes = [
            SimpleNamespace(
                scene_id=f"scenes/s{s}.glb", scene_index=s, category=(s + i) % 6, start=2.0 + 0.25 * i
            )
            for s in range(scenes)
            for i in range(per_scene)
        ]


class StandInHabitat:
    """The part of habitat-lab 0.3's ``habitat.Env`` API that HabitatEnv calls, over toy 1-D
    dynamics: each episode starts some metres from its goal, move_forward closes 0.25 m, stop ends
    the episode (a success within 1 m), turns do nothing. Observations use the recorded sensor
    spaces; the RGB value tells the scene. Not habitat-sim: nothing is rendered."""

    def __init__(self, dataset: StandInDataset, max_episode_steps: int, spaces_: dict | None = None) -> None:
        self.observation_space = spaces.Dict(spaces_ or recorded_spaces())
        self.action_space = SimpleNamespace(
            spaces=dict.fromkeys(RECORDED["objectnav_hssd"]["action_space_keys"])
        )
        random.Random(0).shuffle(dataset.episodes)  # in place, as habitat-lab's EpisodeIterator(shuffle=True)
        self.episodes = dataset.episodes
        self.current_episode = self.episodes[0]
        self.task = SimpleNamespace(is_episode_active=False)
        self.max_episode_steps = max_episode_steps
        self.seeds: list[int] = []
        self.closed = False
        self._steps, self._moved, self._distance, self._stopped = 0, 0.0, 0.0, False

    @property
    def episode_over(self) -> bool:
        return not self.task.is_episode_active or self._steps >= self.max_episode_steps

    def reset(self) -> dict[str, np.ndarray]:
        self._steps, self._moved, self._stopped = 0, 0.0, False
        self._distance = self.current_episode.start
        self.task.is_episode_active = True
        return self._observe()

    def step(self, action: dict) -> dict[str, np.ndarray]:
        assert set(action) == {"action"} and not self.episode_over
        self._steps += 1
        if action["action"] == "move_forward":
            self._moved += 0.25
            self._distance = max(0.0, self._distance - 0.25)
        elif action["action"] == "stop":
            self._stopped = True
            self.task.is_episode_active = False
        return self._observe()

    def get_metrics(self) -> dict[str, float]:
        success = float(self._stopped and self._distance < 1.0)
        spl = (
            success * (self.current_episode.start - 1.0) / max(self._moved, self.current_episode.start - 1.0)
        )
        return {"distance_to_goal": self._distance, "success": success, "spl": spl, "soft_spl": 0.0}

    def _observe(self) -> dict[str, np.ndarray]:
        return {
            "rgb": np.full((32, 32, 3), 50 * self.current_episode.scene_index, np.uint8),
            "depth": np.full((32, 32, 1), 0.5, np.float32),
            "gps": np.array([self._moved, 0.0], np.float32),
            "compass": np.zeros(1, np.float32),
            "objectgoal": np.array([self.current_episode.category], np.int64),
        }

    def seed(self, seed: int) -> None:
        self.seeds.append(seed)

    def close(self) -> None:
        self.closed = True


class StandInEnv(HabitatEnv):
    """HabitatEnv over :class:`StandInDataset` and :class:`StandInHabitat` (HSSD ObjectNav depth range);
    ``simulators`` counts the simulators started."""

    sensor_spaces: dict | None = None

    def _load_task(self):
        self.simulators = 0
        return None, StandInDataset(), HSSD_DEPTH

    def _make_simulator(self):
        self.simulators += 1
        return StandInHabitat(self._dataset, self.episode_length, self.sensor_spaces)


def make_stand_in(**kwargs) -> StandInEnv:
    return StandInEnv(**{"resolution": 32, "episode_length": 5, "trial_length": 12, **kwargs})


def test_trials_keep_one_scene_and_end_on_time():
    env = make_stand_in()
    obs, info = env.reset(seed=0)
    assert info == {"trial_end": False, "trial_step": 0, "new_trial": True}
    scene = env.scene_id
    ends, trial_steps = [], []
    for t in range(1, 13):
        obs, reward, terminated, truncated, info = env.step(FORWARD)
        assert obs in env.observation_space and env._env.current_episode.scene_id == env.scene_id
        # the scene we see is the trial's (the stand-in paints scene s with 50 * s)
        assert obs["rgb"][0, 0, 0] == 50 * int(env.scene_id[len("scenes/s")])
        trial_steps.append(info["trial_step"])
        if terminated or truncated:
            ends.append((t, terminated, truncated, info["trial_end"]))
            assert {"success", "spl", "progress", "distance_to_goal"} <= set(info)
            obs, info = env.reset()
            if t < 12:  # the trial continues in the same scene
                assert (
                    info == {"trial_end": False, "trial_step": t, "new_trial": False}
                    and env.scene_id == scene
                )
        else:
            assert set(info) == {"trial_end", "trial_step"} and not info["trial_end"]
    assert ends == [(5, False, True, False), (10, False, True, False), (12, False, True, True)]
    assert trial_steps == list(range(1, 13))
    assert info == {"trial_end": True, "trial_step": 0, "new_trial": True}  # the reset after the trial end
    seen = {env.scene_id}
    for _ in range(8):  # later trials draw other scenes
        env.reset(options={"new_trial": True})
        seen.add(env.scene_id)
    assert len(seen) > 1 and env._env.seeds == [0]


def test_stop_terminates_with_success_reward_and_metrics():
    env = make_stand_in(trial_length=None, episode_length=50)
    env.reset(seed=3)
    start = env._env.current_episode.start
    moves = math.ceil((start - 1.0) / 0.25) + 1  # end strictly inside 1 m
    for _ in range(moves):
        _, reward, terminated, truncated, info = env.step(FORWARD)
        assert reward == pytest.approx(0.25 - EXTOBJNAV.slack) and not (terminated or truncated)
    _, reward, terminated, truncated, info = env.step(STOP)
    assert terminated and not truncated and reward == pytest.approx(2.0 - EXTOBJNAV.slack)
    assert info["success"] == 1.0 and info["progress"] == 1.0 and 0 < info["spl"] <= 1.0
    assert info["trial_end"]  # trial_length=None: every episode is its own trial
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(FORWARD)
    env.reset()
    _, reward, terminated, _, info = env.step(STOP)  # far from the goal
    assert terminated and info["success"] == 0.0 and reward == pytest.approx(-EXTOBJNAV.slack)


def test_same_step_autoreset_in_gymnasium_vector_env():
    """What the trainer reads (memo_rl.train / registry): ``info["trial_end"]`` at the top level on
    the step whose autoreset starts a new trial, success in ``final_info``, ``final_obs``."""
    from memo_rl import registry

    venv = SyncVectorEnv([lambda: make_stand_in(trial_length=8), lambda: make_stand_in(trial_length=3)],
                         autoreset_mode=AutoresetMode.SAME_STEP)  # fmt: skip
    obs, _ = venv.reset(seed=0)
    trial_ends = []
    for _ in range(9):
        obs, rewards, terminated, truncated, info = venv.step(np.array([FORWARD, FORWARD]))
        ended = terminated | truncated
        assert obs in venv.observation_space and "trial_end" in info
        trial_ends.append(np.asarray(info["trial_end"]).tolist())
        success = registry.episode_success(info, ended)  # None on steps where no episode ended
        assert (success is None) == (not ended.any())
        if success is not None:
            assert (np.isnan(success) == ~ended).all()
        final = registry.final_observations(info, obs, ended)
        assert final["rgb"].shape == (2, 32, 32, 3)
    # env 0: episodes of 5 in trials of 8 -> trial ends after steps 8; env 1: trials of 3 steps
    assert [t[0] for t in trial_ends] == [False] * 7 + [True, False]
    assert [t[1] for t in trial_ends] == [False, False, True] * 3
    venv.close()


def test_check_env_render_and_close():
    env = make_stand_in(render_mode="rgb_array")
    check_env(env, skip_render_check=True)  # render is checked below (no spec: no alternative modes)
    obs, _ = env.reset(seed=1)
    np.testing.assert_array_equal(env.render(), obs["rgb"])
    with pytest.raises(RuntimeError, match="reset"):
        make_stand_in().step(FORWARD)
    inner = env._env
    env.close()
    assert inner.closed


def test_simulator_starts_at_the_first_reset():
    """gymnasium's async vector env builds one env in the main process to read its spaces: that env
    must not start a simulator."""
    env = make_stand_in()
    assert env.simulators == 0 and env.layout is None
    assert (
        env.observation_space
        == ObservationLayout.from_spaces(recorded_spaces(), EXTOBJNAV, 32, HSSD_DEPTH).observation_space
    )
    env.reset(seed=0)
    env.reset(seed=1)
    assert env.simulators == 1 and env.layout.goal == "objectgoal" and env.action_names[0] == "stop"


def test_sensors_that_do_not_fit_the_declared_space_are_one_line():
    env = make_stand_in(num_goals=20)  # declared 20 goal classes; the sensor has 6
    assert env.observation_space["goal"].shape == (20,)
    with pytest.raises(ValueError) as excinfo:
        env.reset(seed=0)
    assert str(excinfo.value) == (
        "habitat goal sensor 'objectgoal' has 6 categories, but the env was set up for num_goals=20 (set env.kwargs.num_goals=6)"
    )
    assert env._env is None  # the simulator was closed again
    no_depth = StandInEnv.__new__(StandInEnv)
    no_depth.sensor_spaces = {k: v for k, v in recorded_spaces().items() if k != "depth"}
    no_depth.__init__(resolution=32)
    with pytest.raises(ValueError, match="the habitat env has no depth camera sensor"):
        no_depth.reset()


def test_dataset_goal_count():
    assert H.dataset_goal_count(StandInDataset()) == 6
    assert H.dataset_goal_count(SimpleNamespace(episodes=[])) is None


def test_encoder_accepts_observation_space():
    torch = pytest.importorskip("torch")
    from agents.encoders import build_encoder

    env = make_stand_in()
    obs, _ = env.reset(seed=0)
    encoder = build_encoder(env.observation_space, hidden_size=16)
    assert encoder.keys == ("depth", "goal", "gps_compass", "rgb")
    with torch.no_grad():
        out = encoder({k: torch.as_tensor(v)[None] for k, v in obs.items()})
    assert out.shape == (1, encoder.out_dim) and torch.isfinite(out).all()


# ---- real habitat (pytest -m habitat) -------------------------------------------------------------


def _real_vector_env(preset: str, overrides: list[str]):
    pytest.importorskip("habitat_sim")
    pytest.importorskip("habitat")
    from memo_rl.config import ConfigError, build_config
    from memo_rl.registry import make_vector_env

    cfg = build_config(preset, overrides)
    try:
        return make_vector_env(cfg.env)
    except ConfigError as err:
        if "dataset not found" in str(err) or "needs env.kwargs.config_path" in str(err):
            pytest.skip(f"habitat data or task config not available: {err}")
        raise


@pytest.mark.habitat
def test_real_extobjnav_contract():
    venv = _real_vector_env(
        "env/habitat_extobjnav",
        [
            "env.num_envs=2",
            "env.kwargs.resolution=64",
            "env.kwargs.episode_length=20",
            "env.kwargs.trial_length=50",
        ],
    )
    try:
        assert set(venv.single_observation_space) == {"rgb", "depth", "gps_compass", "goal"}
        obs, _ = venv.reset(seed=0)
        assert obs in venv.observation_space
        scenes = venv.get_attr("scene_id")
        trial_ends = 0
        rng = np.random.default_rng(0)
        for _ in range(60):
            actions = rng.choice([FORWARD, LEFT, RIGHT], size=2, p=[0.6, 0.2, 0.2])
            obs, rewards, terminated, truncated, info = venv.step(actions)
            assert obs in venv.observation_space and np.isfinite(rewards).all()
            trial_end = np.asarray(info["trial_end"], bool)
            trial_ends += int(trial_end.sum())
            now = venv.get_attr("scene_id")
            assert all(a == b for a, b, end in zip(scenes, now, trial_end) if not end)  # one scene per trial
            scenes = now
        assert trial_ends >= 2  # 50-step trials
    finally:
        venv.close()


@pytest.mark.habitat
def test_real_env_passes_gymnasium_check_env():
    pytest.importorskip("habitat_sim")
    try:
        env = HabitatEnv(resolution=64, episode_length=20, trial_length=50)
    except ValueError as err:
        if "dataset not found" in str(err):
            pytest.skip(str(err))
        raise
    try:
        check_env(env)
    finally:
        env.close()
