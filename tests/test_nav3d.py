"""Tests for Nav3D (envs/nav3d): ray-cast geometry, collision, task rules and metrics, trials,
determinism and state round-trip, gymnasium registration and checks, rendering, encoder support,
argument validation."""

from __future__ import annotations

import json
import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401 (registers the ids)
from envs.nav3d import ExtObjNavEnv, ExtObjNavVectorEnv, MultiONEnv, MultiONVectorEnv
from envs.nav3d._render import MAP_MARK, MAX_DEPTH, OBJ_PALETTE
from envs.nav3d._world import AGENT_RADIUS, CELL, FORWARD, OBJ_RADIUS

STOP, FWD, LEFT, RIGHT = range(4)
SLACK = 0.003


def _act(a: int, n: int = 1) -> np.ndarray:
    return np.full(n, a, np.int64)


def _placed(cls=ExtObjNavVectorEnv, pose=(2.0, 2.0, 0.0), objects=None, **kwargs):
    """A one-env Nav3D (rooms=2) in a known state: agent at ``pose`` (also the episode start),
    objects at ``objects`` (the rest parked in a row behind x = 0.9, low y), goal = object 0 first."""
    env = cls(1, rooms=2, **kwargs)
    env.reset(seed=0)
    s = env.get_state()
    k = s["obj_pos"].shape[1]
    s["obj_pos"][0] = [(0.9, 0.9 + 0.1 * j) for j in range(k)]  # overlapping is fine for tests
    for j, xy in enumerate(objects or []):
        s["obj_pos"][0, j] = xy
    s["pose"][0] = s["start"][0] = s["trial_start"][0] = pose
    s["goal_seq"][0] = np.arange(s["goal_seq"].shape[1])
    s["goal_idx"][0] = 0
    s["path_len"][0] = 0.0
    s["prev_dist"][0] = math.dist(pose[:2], s["obj_pos"][0, 0])
    s["episode_step"][0] = 0
    s["trial_step"][0] = 0
    env.set_state(s)
    return env


def _wall_clearance(grid: np.ndarray, x: float, y: float) -> float:
    """Distance from (x, y) to the nearest wall cell of ``grid`` [G, G]."""
    cy, cx = np.nonzero(grid)
    px = np.clip(x, cx * CELL, (cx + 1) * CELL)
    py = np.clip(y, cy * CELL, (cy + 1) * CELL)
    return float(np.sqrt((px - x) ** 2 + (py - y) ** 2).min())


# ---- geometry -----------------------------------------------------------------------------------


@pytest.mark.parametrize("pose,expected", [((2.0, 2.0, math.pi), 1.5), ((2.0, 2.25, -math.pi / 2), 1.75)])
def test_depth_equals_distance_to_wall_ahead(pose, expected):
    # room (0, 0) spans x, y in [0.5, 3.5]; the outer wall faces are x = 0.5 and y = 0.5
    env = _placed(pose=pose, objects=[(3.2, 3.2)])
    depth = env.observe()["depth"][0, :, :, 0]
    h = depth.shape[0]
    np.testing.assert_allclose(depth[h // 2 - 2 : h // 2 + 2, 30:34], expected, atol=0.01)
    assert depth.min() > 0 and depth.max() <= MAX_DEPTH


def test_object_in_front_visible_and_hidden_behind_wall():
    env = _placed(pose=(2.0, 2.0, 0.0), objects=[(3.0, 2.0)])
    s = env.get_state()
    color = OBJ_PALETTE[s["obj_color"][0, 0]]
    obs = env.observe()
    h = obs["rgb"].shape[1]
    centre = obs["rgb"][0, h // 2, 30:34]
    assert (centre == color).all()
    np.testing.assert_allclose(obs["depth"][0, h // 2, 30:34, 0], 1.0 - OBJ_RADIUS, atol=0.01)

    # the same object in the next room, behind the solid wall x in [3.5, 4.0]
    s["obj_pos"][0, 0] = (5.0, 2.0)
    s["grid"][0, :, 7] = 1
    env.set_state(s)
    obs = env.observe()
    assert not (obs["rgb"][0] == color).all(-1).any()
    np.testing.assert_allclose(obs["depth"][0, h // 2, 30:34, 0], 1.5, atol=0.01)
    # a door in that wall (y in [1.5, 2.5]) reveals it again
    s["grid"][0, 3:5, 7] = 0
    env.set_state(s)
    obs = env.observe()
    assert (obs["rgb"][0, h // 2, 30:34] == color).all()


def test_walls_are_never_entered():
    env = _placed(pose=(2.0, 2.0, math.pi))  # head-on into the wall x = 0.5: stops, no slide
    for _ in range(12):
        env.step(_act(FWD))
    x, y, _ = env.get_state()["pose"][0]
    assert x == pytest.approx(0.5 + 2 * FORWARD - 0.0, abs=FORWARD) and x >= 0.5 + AGENT_RADIUS
    assert y == pytest.approx(2.0)
    env = _placed(pose=(2.0, 2.0, math.radians(150)))  # oblique: slides along the wall (+y)
    ys = []
    for _ in range(10):
        env.step(_act(FWD))
        ys.append(env.get_state()["pose"][0, 1])
    assert ys[-1] - ys[-2] == pytest.approx(FORWARD * 0.5)

    # random walks of many envs: every pose keeps the agent's radius clear of walls
    venv = ExtObjNavVectorEnv(16, rooms=2, episode_length=80)
    venv.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(150):
        venv.step(rng.choice([FWD, FWD, FWD, LEFT, RIGHT], 16))
        s = venv.get_state()
        for i in range(16):
            assert _wall_clearance(s["grid"][i], *s["pose"][i, :2]) >= AGENT_RADIUS - 1e-9
            gap = np.linalg.norm(s["obj_pos"][i] - s["pose"][i, :2], axis=1).min()
            assert gap >= AGENT_RADIUS + OBJ_RADIUS - 1e-9


# ---- task rules ---------------------------------------------------------------------------------


def test_extobjnav_success_reward_and_spl():
    env = _placed(pose=(0.9, 2.0, 0.0), objects=[(3.0, 2.0)])
    s = env.get_state()
    s["shortest"][0] = 2.1 - 1.0  # straight line to the 1 m success disk
    env.set_state(s)
    grid_before = s["grid"].copy()
    for _ in range(5):
        obs, rew, term, trunc, info = env.step(_act(FWD))
        assert rew[0] == pytest.approx(FORWARD - SLACK, abs=1e-6) and not term[0] and not info["_success"][0]
    obs, rew, term, trunc, info = env.step(_act(STOP))  # 0.85 m from the target, facing it
    assert term[0] and not trunc[0] and info["_success"][0] and info["success"][0]
    assert rew[0] == pytest.approx(2.0 - SLACK, abs=1e-6)
    assert info["spl"][0] == pytest.approx(1.1 / 1.25, abs=1e-6) and 0 < info["spl"][0] <= 1
    assert info["progress"][0] == 1.0 and not info["trial_end"][0] and info["trial_step"][0] == 6
    assert info["final_obs"][0]["gps_compass"][0] == pytest.approx(1.25)
    after = env.get_state()  # next episode of the same trial
    assert after["episode_step"][0] == 0 and after["trial_step"][0] == 6
    np.testing.assert_array_equal(after["grid"], grid_before)
    np.testing.assert_array_equal(obs["gps_compass"][0], 0.0)


@pytest.mark.parametrize("pose", [(0.9, 2.0, 0.0), (2.15, 2.0, math.pi)])  # too far; near but facing away
def test_extobjnav_stop_fails_when_far_or_not_visible(pose):
    env = _placed(pose=pose, objects=[(3.0, 2.0)])
    obs, rew, term, trunc, info = env.step(_act(STOP))
    assert term[0] and info["_success"][0] and not info["success"][0]
    assert info["spl"][0] == 0.0 and rew[0] == pytest.approx(-SLACK, abs=1e-6)


def test_multion_order_and_wrong_stop():
    objects = [(3.0, 2.0), (2.0, 5.5)]
    env = _placed(MultiONVectorEnv, pose=(2.0, 2.0, 0.0), objects=objects, num_goals=2)
    s = env.get_state()
    second = np.eye(8)[s["obj_color"][0, 1]]
    obs, rew, term, trunc, info = env.step(_act(STOP))  # 1 m from goal 1: found
    assert not term[0] and not info["_success"][0] and rew[0] == pytest.approx(3.0 - SLACK, abs=1e-6)
    np.testing.assert_array_equal(obs["goal"][0], second)
    obs, rew, term, trunc, info = env.step(_act(STOP))  # 3.5 m from goal 2: failure
    assert term[0] and info["_success"][0] and not info["success"][0]
    assert info["progress"][0] == 0.5 and info["spl"][0] == 0.0 and rew[0] == pytest.approx(-SLACK, abs=1e-6)
    assert info["trial_end"][0]  # MultiON default: each episode is its own trial

    objects = [(3.0, 2.0), (2.0, 3.2)]
    env = _placed(MultiONVectorEnv, pose=(2.0, 2.0, 0.0), objects=objects, num_goals=2)
    s = env.get_state()
    s["shortest"][0] = 1.0 + math.dist(*objects)  # the straight-line tour start -> g1 -> g2
    env.set_state(s)
    env.step(_act(STOP))
    for _ in range(3):  # face +y
        env.step(_act(LEFT))
    obs, rew, term, trunc, info = env.step(_act(FWD))  # to (2.0, 2.25): 0.95 m from goal 2
    assert not term[0] and rew[0] == pytest.approx(FORWARD - SLACK, abs=1e-6)
    obs, rew, term, trunc, info = env.step(_act(STOP))
    assert term[0] and info["success"][0] and info["progress"][0] == 1.0
    assert rew[0] == pytest.approx(3.0 - SLACK, abs=1e-6)
    assert info["spl"][0] == 1.0  # 0.25 m walked, shorter than the centre-to-centre reference


def test_trial_structure_and_truncation():
    env = ExtObjNavVectorEnv(3, rooms=2, episode_length=20, trial_length=50)
    env.reset(seed=4)
    first = env.get_state()
    rng = np.random.default_rng(0)
    for t in range(1, 51):
        obs, rew, term, trunc, info = env.step(rng.integers(1, 4, 3))  # never stop
        assert not term.any()
        assert trunc.all() == (t in (20, 40, 50)) and info["_final_obs"].all() == (t in (20, 40, 50))
        assert info["trial_end"].all() == (t == 50) and not (t < 50 and info["trial_end"].any())
        assert (info["trial_step"] == (0 if t == 50 else t)).all()
        s = env.get_state()
        if t < 50:
            np.testing.assert_array_equal(s["grid"], first["grid"])
            np.testing.assert_array_equal(s["obj_pos"], first["obj_pos"])
    for i in range(3):  # a new layout after the trial
        assert not np.array_equal(s["obj_pos"][i], first["obj_pos"][i])


def _expected_gps(pose: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """gps_compass [N, 3] of poses [N, 3] in the frame of origin poses [N, 3] (x forward, y left)."""
    d = pose[:, :2] - origin[:, :2]  # [N, 2]
    c, s = np.cos(origin[:, 2]), np.sin(origin[:, 2])
    turn = (pose[:, 2] - origin[:, 2] + math.pi) % (2 * math.pi) - math.pi
    return np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], turn], axis=1)


def test_gps_frame_trial_keeps_the_first_start_as_origin_until_the_trial_ends():
    """gps_frame="trial": gps_compass is measured from the pose the trial started in, through every
    episode of the trial, and from the new start after a trial ends; "episode" restarts it at every
    episode. Everything else (images, rewards, episode ends) is the same for the same actions."""
    rng = np.random.default_rng(0)
    actions = rng.choice([STOP, FWD, FWD, FWD, LEFT, RIGHT], size=(150, 4))  # [T, N]
    runs = {}
    for frame in ("episode", "trial"):
        env = ExtObjNavVectorEnv(4, rooms=2, num_objects=4, resolution=16, episode_length=20, trial_length=60,
                                 gps_frame=frame)  # fmt: skip
        obs, _ = env.reset(seed=3)
        origin = env.get_state()["pose"].copy()  # [4, 3] trial starts
        np.testing.assert_array_equal(obs["gps_compass"], 0.0)
        episode_starts = trial_ends = 0
        record = []
        for a in actions:
            obs, rew, term, trunc, info = env.step(a)
            state = env.get_state()
            origin[info["trial_end"]] = state["pose"][info["trial_end"]]  # the new trial's first pose
            episode_start = (term | trunc) & ~info["trial_end"]
            episode_starts += int(episode_start.sum())
            trial_ends += int(info["trial_end"].sum())
            if frame == "trial":
                np.testing.assert_allclose(obs["gps_compass"], _expected_gps(state["pose"], origin), atol=1e-4)
            else:
                np.testing.assert_allclose(obs["gps_compass"], _expected_gps(state["pose"], state["start"]), atol=1e-4)
                np.testing.assert_array_equal(obs["gps_compass"][term | trunc], 0.0)
            record.append((obs["rgb"].copy(), obs["depth"].copy(), rew.copy(), term.copy(), trunc.copy()))
        assert episode_starts >= 8 and trial_ends >= 8  # both kinds of boundary were crossed
        runs[frame] = record
    for (rgb_e, depth_e, rew_e, term_e, trunc_e), (rgb_t, depth_t, rew_t, term_t, trunc_t) in zip(*runs.values()):
        np.testing.assert_array_equal(rgb_e, rgb_t)
        np.testing.assert_array_equal(depth_e, depth_t)
        np.testing.assert_array_equal(rew_e, rew_t)
        np.testing.assert_array_equal(term_e, term_t)
        np.testing.assert_array_equal(trunc_e, trunc_t)


@pytest.mark.parametrize("frame", ["episode", "trial"])
def test_goal_position_is_what_the_gps_reads_at_the_goal(frame):
    """goal_position() is the current goal's position in the gps_compass frame: moving every
    agent onto its goal object makes its GPS read exactly that, in later episodes of a trial too."""
    env = ExtObjNavVectorEnv(4, rooms=2, num_objects=4, resolution=16, episode_length=20, trial_length=60,
                             gps_frame=frame)  # fmt: skip
    env.reset(seed=5)
    rng = np.random.default_rng(1)
    for _ in range(45):  # into the second and third episodes, frames drifting from the poses
        env.step(rng.choice([STOP, FWD, FWD, LEFT, RIGHT], size=4))
    expected = env.goal_position()  # [4, 2]
    s = env.get_state()
    goal = s["goal_seq"][np.arange(4), s["goal_idx"]]  # [4]
    s["pose"][:, :2] = s["obj_pos"][np.arange(4), goal]
    env.set_state(s)
    np.testing.assert_allclose(env.observe()["gps_compass"][:, :2], expected, atol=1e-4)
    if frame == "trial":  # the trial frame is not the episode's: the test crossed episode starts
        assert not np.allclose(s["trial_start"], s["start"])


def test_goal_vector_is_the_goal_in_the_agents_own_frame():
    """``goal_vector`` (x forward, y left of the agent) reads (d, 0) for a goal straight ahead; a
    left turn of 30 degrees puts it 30 degrees to the right; it is off unless asked for; the
    final observation of an ended episode holds the old goal's vector, the next one the new goal's."""
    env = _placed(pose=(2.0, 2.0, 0.0), objects=[(4.0, 2.0), (2.0, 1.0)], num_objects=2, goal_vector=True)
    np.testing.assert_allclose(env.observe()["goal_vector"], [[2.0, 0.0]], atol=1e-5)
    obs, *_ = env.step(_act(LEFT))
    turn = math.radians(30)
    np.testing.assert_allclose(obs["goal_vector"], [[2.0 * math.cos(turn), -2.0 * math.sin(turn)]], atol=1e-5)
    assert "goal_vector" not in _placed(num_objects=2).observe()
    assert "goal_vector" in env.single_observation_space.spaces

    env = ExtObjNavVectorEnv(4, rooms=2, num_objects=4, resolution=16, episode_length=5, trial_length=40,
                             gps_frame="trial", goal_vector=True)  # fmt: skip
    env.reset(seed=3)
    for _ in range(5):  # every episode is cut at step 5
        old_goal = env.goal_position()  # [4, 2] in the trial's frame, which the episode end keeps
        obs, _, _, truncated, info = env.step(_act(FWD, 4))
    assert truncated.all()
    for i in range(4):
        x, y, heading = info["final_obs"][i]["gps_compass"]
        dx, dy = old_goal[i] - (x, y)
        expected = [math.cos(heading) * dx + math.sin(heading) * dy, -math.sin(heading) * dx + math.cos(heading) * dy]
        np.testing.assert_allclose(info["final_obs"][i]["goal_vector"], expected, atol=1e-4)
    x, y, heading = obs["gps_compass"].T  # the next episodes' first observations, new goals
    dx, dy = (env.goal_position() - np.stack([x, y], 1)).T
    expected = np.stack([np.cos(heading) * dx + np.sin(heading) * dy, -np.sin(heading) * dx + np.cos(heading) * dy], 1)
    np.testing.assert_allclose(obs["goal_vector"], expected, atol=1e-4)
    assert obs in env.observation_space


def test_state_saved_before_trial_start_existed_still_restores():
    """A checkpoint's env state without ``trial_start`` (saved before gps_frame) restores, with the
    episode's start as the trial's origin; every other value comes back as saved."""
    env = ExtObjNavVectorEnv(2, rooms=2, num_objects=4, resolution=16, gps_frame="trial")
    env.reset(seed=1)
    for a in (FWD, LEFT, FWD):
        env.step(_act(a, 2))
    old = {key: value for key, value in env.get_state().items() if key != "trial_start"}
    fresh = ExtObjNavVectorEnv(2, rooms=2, num_objects=4, resolution=16, gps_frame="trial")
    fresh.set_state(old)
    restored = fresh.get_state()
    np.testing.assert_array_equal(restored["trial_start"], old["start"])
    for key, value in old.items():
        np.testing.assert_array_equal(restored[key], value)


def test_trial_shaping_telescopes_over_the_trial_and_changes_only_episode_ends():
    """shaping="trial": the distance rewards of a trial sum to (first distance - current distance);
    the same actions under "episode" shaping differ only at episode ends inside the trial."""
    rng = np.random.default_rng(3)
    actions = rng.choice(4, size=(299, 4), p=[0.05, 0.55, 0.2, 0.2])  # stops end some episodes early
    rewards, ends = {}, {}
    for shaping in ("episode", "trial"):
        env = ExtObjNavVectorEnv(4, rooms=2, num_objects=4, resolution=8, episode_length=30, trial_length=300,
                                 shaping=shaping)
        env.reset(seed=5)
        first_distance = env.get_state()["prev_dist"].copy()  # [4]
        per_step, ended = [], []
        for a in actions:  # 299 steps: the trial (300) has not ended
            _, rew, term, trunc, info = env.step(a)
            shaping_part = rew + env.slack - env.goal_reward * info["success"]  # [4]
            per_step.append(shaping_part)
            ended.append(term | trunc)
        rewards[shaping], ends[shaping] = np.array(per_step), np.array(ended)  # [299, 4]
        if shaping == "trial":
            np.testing.assert_allclose(rewards[shaping].sum(0), first_distance - env.get_state()["prev_dist"], atol=1e-3)
    np.testing.assert_array_equal(ends["episode"], ends["trial"])
    assert ends["trial"].sum() > 20
    differ = ~np.isclose(rewards["episode"], rewards["trial"], atol=1e-6)
    assert differ.any() and not (differ & ~ends["trial"]).any()


# ---- determinism and state ----------------------------------------------------------------------


def _rollout(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    out = [*obs.values()]
    for a in actions:
        obs, rew, term, trunc, info = env.step(a)
        out += [*obs.values(), rew, term, trunc, info["trial_end"], info["spl"], info["trial_step"]]
    return out


@pytest.mark.parametrize("cls", [ExtObjNavVectorEnv, MultiONVectorEnv])
def test_determinism_and_state_round_trip(cls):
    n = 4
    actions = np.random.default_rng(0).choice([0, 1, 1, 1, 2, 3], (120, n))
    kwargs = dict(rooms=2, resolution=16, episode_length=30, trial_length=70)
    a = _rollout(cls(n, **kwargs), 7, actions)
    b = _rollout(cls(n, **kwargs), 7, actions)
    c = _rollout(cls(n, **kwargs), 8, actions)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))

    env = cls(n, **kwargs)
    env.reset(seed=3)
    for act in actions[:41]:
        env.step(act)
    state = env.get_state()
    first = [env.step(act) for act in actions[41:]]
    restored = cls(n, **kwargs)
    restored.set_state(state)
    for (o1, r1, t1, u1, i1), act in zip(first, actions[41:], strict=True):
        o2, r2, t2, u2, i2 = restored.step(act)
        for key in o1:
            np.testing.assert_array_equal(o1[key], o2[key])
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_array_equal(t1 | u1, t2 | u2)
        np.testing.assert_array_equal(i1["success"], i2["success"])
    with pytest.raises(ValueError, match="state keys"):
        restored.set_state({"pose": state["pose"]})


# ---- gymnasium integration, rendering, encoders --------------------------------------------------


@pytest.mark.parametrize(
    "env_id,cls,vcls",
    [
        ("memo_rl/Nav3D-ExtObjNav-v0", ExtObjNavEnv, ExtObjNavVectorEnv),
        ("memo_rl/Nav3D-MultiON-v0", MultiONEnv, MultiONVectorEnv),
    ],
)
def test_registration_and_check_env(env_id, cls, vcls):
    venv = gym.make_vec(env_id, num_envs=3, rooms=2, resolution=32)
    assert type(venv) is vcls and venv.num_envs == 3
    obs, _ = venv.reset(seed=0)
    assert obs in venv.observation_space
    obs, rew, term, trunc, info = venv.step(venv.action_space.sample())
    assert obs in venv.observation_space and rew.dtype == np.float32
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        made = gym.make(env_id, rooms=2)
        assert isinstance(made.unwrapped, cls)
        check_env(made.unwrapped)
        check_env(cls(rooms=2, render_mode="rgb_array"))
    problems = [str(w.message) for w in caught if "not having a spec" not in str(w.message)]
    assert not problems, problems


def test_render_first_person_and_map():
    env = ExtObjNavVectorEnv(2, rooms=2, render_mode="rgb_array")
    obs, _ = env.reset(seed=5)
    frames = env.render()
    assert frames.shape == (2, 256, 512, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames[:, ::4, :256:4], obs["rgb"])  # left: the 4x upscaled view
    s = env.get_state()
    for i in range(2):
        mapped = frames[i, :, 256:]
        for k in range(s["obj_pos"].shape[1]):
            assert (mapped == OBJ_PALETTE[s["obj_color"][i, k]]).all(-1).any()
        assert (mapped == MAP_MARK).all(-1).sum() > 20  # agent, heading and goal ring
    with pytest.warns(UserWarning, match="render_mode=None"):
        assert ExtObjNavVectorEnv(1).render() is None


def test_encoder_accepts_observation_space():
    torch = pytest.importorskip("torch")
    from agents.encoders import build_encoder

    env = ExtObjNavVectorEnv(2, rooms=2)
    obs, _ = env.reset(seed=0)
    encoder = build_encoder(env.single_observation_space, hidden_size=16)
    assert encoder.keys == ("depth", "goal", "gps_compass", "rgb")
    with torch.no_grad():
        out = encoder({k: torch.as_tensor(v) for k, v in obs.items()})
    assert out.shape == (2, encoder.out_dim) and torch.isfinite(out).all()


# ---- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls,kwargs,message",
    [
        (ExtObjNavVectorEnv, dict(resolution=0), "resolution must be an int in [8, 256], got 0"),
        (ExtObjNavVectorEnv, dict(resolution=512), "resolution must be an int in [8, 256], got 512"),
        (ExtObjNavVectorEnv, dict(resolution=64.0), "resolution must be an int in [8, 256], got 64.0"),
        (
            ExtObjNavVectorEnv,
            dict(rooms=1, num_objects=8),
            "num_objects must be <= 4 (4 object slots per room, rooms=1), got 8",
        ),
        (ExtObjNavVectorEnv, dict(num_objects=9), "num_objects must be an int in [1, 8], got 9"),
        (ExtObjNavVectorEnv, dict(rooms=5), "rooms must be an int in [1, 4], got 5"),
        (ExtObjNavVectorEnv, dict(fov=180), "fov must be a number of degrees in [10, 150], got 180"),
        (ExtObjNavVectorEnv, dict(trial_length=0), "trial_length must be an int >= 1, got 0"),
        (ExtObjNavVectorEnv, dict(shaping="none"), "shaping must be one of episode, trial, got 'none'"),
        (MultiONVectorEnv, dict(gps_frame="world"), "gps_frame must be one of episode, trial, got 'world'"),
        (ExtObjNavVectorEnv, dict(goal_vector="yes"), "goal_vector must be true or false, got 'yes'"),
        (MultiONVectorEnv, dict(num_objects=2, num_goals=3), "num_goals must be an int in [1, 2], got 3"),
        (
            MultiONVectorEnv,
            dict(render_mode="human"),
            "render_mode must be None or one of ['rgb_array'], got 'human'",
        ),
    ],
)
def test_bad_arguments(cls, kwargs, message):
    with pytest.raises(ValueError) as excinfo:
        cls(2, **kwargs)
    assert str(excinfo.value) == message


def test_bad_actions():
    env = ExtObjNavVectorEnv(2, rooms=1, num_objects=2)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(2, np.int64))
    env.reset(seed=0)
    before = env.get_state()
    with pytest.raises(ValueError, match=r"actions must be in \[0, 3\], got 4 for env 1"):
        env.step(np.array([1, 4]))
    for k, v in env.get_state().items():  # a rejected step changes nothing
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("preset", ["nav3d_extobjnav_gru", "nav3d_extobjnav_small_gru", "nav3d_multion_gru",
                                    "nav3d_extobjnav_memo", "nav3d_extobjnav_small_memo", "nav3d_multion_memo"])
def test_presets_train_end_to_end(tmp_path, preset):
    """The presets' agents (CNN over RGB and depth, a GRU or Memo core) train on the batched env through
    memo-rl train."""
    from memo_rl.cli import main

    run_dir = tmp_path / preset
    args = ["train", preset, "env.num_envs=2", "env.kwargs.resolution=16", "ppo.rollout_length=16",
            "ppo.num_minibatches=2", "ppo.epochs=1", "train.total_steps=64", "run.progress=false", f"run.dir={run_dir}"]
    assert main(args) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env_steps"] == 64 and summary["env_id"].startswith("memo_rl/Nav3D-")
    assert summary["memory_core"] == preset.rsplit("_", 1)[1]


def _memory_probe_module(monkeypatch):
    """experiments/nav3d_memory_probe.py as a module, its sibling ``probing`` importable as when run."""
    import importlib.util

    from conftest import REPO

    monkeypatch.syspath_prepend(str(REPO / "experiments"))
    spec = importlib.util.spec_from_file_location("nav3d_memory_probe", REPO / "experiments" / "nav3d_memory_probe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_memory_probe_error_reads_a_held_position_and_not_a_missing_one(monkeypatch):
    """probe_error: a position that is a linear mix of the outputs is read back far better than the
    mean guess by both probes; one independent of them is read no better than the mean."""
    probe = _memory_probe_module(monkeypatch)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 16))  # [n, d]
    held = X[:, :2] @ np.array([[2.0, 0.5], [-1.0, 3.0]])  # [n, 2]
    missing = rng.normal(scale=3.0, size=(600, 2))  # [n, 2]
    train = np.arange(600) < 300
    e = probe.probe_error(X, held, train, ~train)
    assert e["linear"] < 0.1 * e["mean"] and e["mlp"] < 0.5 * e["mean"]
    e = probe.probe_error(X, missing, train, ~train)
    assert e["linear"] > 0.95 * e["mean"] and e["mlp"] > 0.95 * e["mean"]


def test_memory_probe_reads_an_extobjnav_run(tmp_path):
    """experiments/nav3d_memory_probe.py plays a trained ExtObjNav run and prints its rows."""
    from conftest import run_experiment

    from memo_rl.cli import main

    run_dir = tmp_path / "run"
    assert main(["train", "nav3d_extobjnav_gru", "env.num_envs=2", "env.kwargs.resolution=16", "env.kwargs.rooms=2",
                 "env.kwargs.num_objects=1", "env.kwargs.episode_length=10", "env.kwargs.trial_length=40",
                 "ppo.rollout_length=16", "ppo.num_minibatches=2", "ppo.epochs=1", "train.total_steps=64",
                 "run.progress=false", f"run.dir={run_dir}"]) == 0  # fmt: skip
    done = run_experiment("nav3d_memory_probe.py", str(run_dir), "--envs", "16", "--steps", "200",
                          "--env-kwargs", "trial_length=40", timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    starts = int(lines[0].split(": ")[1].split()[0])
    assert starts >= 16 * 200 // 10  # 10-step episodes: at least one start per 10 steps per env
    assert lines[1].startswith("  the agent's own GPS position") and " m linear, " in lines[1]
    assert lines[2].startswith("  the same from the encoders' output")
    assert [line.split(":")[0] for line in lines[3:]] == [
        "  goal found earlier in the trial", "  first episode of the trial", "  later episode, goal not found before"]
    bad = run_experiment("nav3d_memory_probe.py", str(run_dir), "--env-kwargs", "trial_length=long")
    assert bad.returncode != 0 and "--env-kwargs takes KEY=INT, got 'trial_length=long'" in bad.stderr
