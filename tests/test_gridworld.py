"""Tests for the numba gridworlds (envs/gridworld): dynamics, trials, autoreset, determinism,
state round-trip, gymnasium registration and checks, rendering, argument validation."""

from __future__ import annotations

import importlib
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.gridworld import DarkKeyToDoorEnv, DarkKeyToDoorVectorEnv, DarkRoomEnv, DarkRoomVectorEnv
from envs.gridworld.vector import AGENT_COLOR, CELL_PX, DOOR_COLOR, GOAL_COLOR, KEY_COLOR

NOOP, UP, DOWN, LEFT, RIGHT = range(5)


def _act(a: int, n: int = 1) -> np.ndarray:
    return np.full(n, a, np.int64)


def _ktd(pos, key, door, **kwargs) -> DarkKeyToDoorVectorEnv:
    """A one-env Key-to-Door put into a known state (episode step 0, trial step 0)."""
    env = DarkKeyToDoorVectorEnv(1, **kwargs)
    env.reset(seed=0)
    state = env.get_state()
    state["pos"][0] = pos
    state["key"][0] = key
    state["door"][0] = door
    state["has_key"][0] = False
    state["episode_step"][0] = 0
    state["trial_step"][0] = 0
    env.set_state(state)
    return env


def _dark_room(goal, n: int = 1, **kwargs) -> DarkRoomVectorEnv:
    env = DarkRoomVectorEnv(n, **kwargs)
    env.reset(seed=0)
    state = env.get_state()
    state["goal"][:] = goal
    env.set_state(state)
    return env


# ---- Key-to-Door dynamics -----------------------------------------------------------------------


def test_key_to_door_key_then_door():
    env = _ktd(pos=(0, 0), key=(2, 0), door=(2, 2))
    np.testing.assert_allclose(env.observe()[0], [0, 0, 0, 0])
    expected = [  # action, reward, terminated, obs after the step (before autoreset)
        (RIGHT, 0.0, False, [1 / 8, 0, 0, 1 / 50]),
        (RIGHT, 1.0, False, [2 / 8, 0, 1, 2 / 50]),  # key: +1, has_key = 1
        (RIGHT, 0.0, False, [3 / 8, 0, 1, 3 / 50]),
        (LEFT, 0.0, False, [2 / 8, 0, 1, 4 / 50]),  # back on the key: nothing
        (DOWN, 0.0, False, [2 / 8, 1 / 8, 1, 5 / 50]),
        (DOWN, 1.0, True, [2 / 8, 2 / 8, 1, 6 / 50]),  # door with the key: +1, terminated
    ]
    for action, reward, term, obs_after in expected:
        obs, rew, terminated, truncated, info = env.step(_act(action))
        assert rew[0] == reward and terminated[0] == term and not truncated[0]
        np.testing.assert_allclose(info["final_obs"][0], obs_after, atol=1e-7)
        assert info["_final_obs"][0] == term and info["_success"][0] == term
        if not term:
            np.testing.assert_array_equal(obs, info["final_obs"])
    assert info["success"][0]
    # Same-step autoreset: a new episode of the same trial, from a cell that is neither key nor door.
    assert obs[0, 2] == 0 and obs[0, 3] == 0
    start = np.rint(obs[0, :2] * 8).astype(int)
    assert tuple(start) not in {(2, 0), (2, 2)}
    state = env.get_state()
    assert tuple(state["key"][0]) == (2, 0) and tuple(state["door"][0]) == (2, 2)
    assert not state["has_key"][0] and state["episode_step"][0] == 0 and state["trial_step"][0] == 6


def test_key_to_door_door_without_key_does_nothing():
    env = _ktd(pos=(2, 1), key=(0, 0), door=(2, 2))
    obs, rew, term, trunc, info = env.step(_act(DOWN))
    assert rew[0] == 0 and not term[0] and not trunc[0]
    np.testing.assert_allclose(obs[0], [2 / 8, 2 / 8, 0, 1 / 50])
    obs, rew, term, trunc, info = env.step(_act(NOOP))  # staying on the door does nothing either
    assert rew[0] == 0 and not term[0]


def test_key_to_door_truncation_at_episode_length():
    env = _ktd(pos=(4, 4), key=(0, 0), door=(8, 8), episode_length=5)
    for t in range(1, 6):
        obs, rew, term, trunc, info = env.step(_act(NOOP))
        assert rew[0] == 0 and not term[0]
        assert trunc[0] == (t == 5)
    np.testing.assert_allclose(info["final_obs"][0], [0.5, 0.5, 0, 1.0])
    assert info["_final_obs"][0] and not info["success"][0] and info["_success"][0]
    assert not info["trial_end"][0] and info["trial_step"][0] == 5
    assert obs[0, 3] == 0


def test_key_to_door_task_and_start_distribution():
    env = DarkKeyToDoorVectorEnv(4096)
    obs, _ = env.reset(seed=1)
    s = env.get_state()
    assert np.all(np.any(s["key"] != s["door"], axis=1))
    assert np.all(np.any(s["pos"] != s["key"], axis=1)) and np.all(np.any(s["pos"] != s["door"], axis=1))
    # every cell is used as key, as door and as start
    for name in ("key", "door", "pos"):
        cells = s[name][:, 1] * 9 + s[name][:, 0]
        assert len(np.unique(cells)) == 81
    np.testing.assert_allclose(obs[:, :2] * 8, s["pos"], atol=1e-5)


# ---- Dark Room dynamics -------------------------------------------------------------------------


def test_dark_room_starts_at_centre_and_rewards_every_step_on_goal():
    env = DarkRoomVectorEnv(3)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, np.full((3, 2), 0.5, np.float32))
    env = _dark_room(goal=(5, 4))
    rewards = []
    for a in [RIGHT, NOOP, NOOP, RIGHT, LEFT]:
        obs, rew, term, trunc, info = env.step(_act(a))
        rewards.append(rew[0])
        assert not term[0]
    assert rewards == [1, 1, 1, 0, 1]


def test_dark_room_reward_once_and_success():
    env = _dark_room(goal=(5, 4), reward_once=True, episode_length=6)
    rewards = [env.step(_act(a))[1][0] for a in [RIGHT, NOOP, RIGHT, LEFT, NOOP]]
    assert rewards == [1, 0, 0, 0, 0]
    obs, rew, term, trunc, info = env.step(_act(NOOP))
    assert trunc[0] and not term[0] and info["success"][0] and info["_success"][0]
    np.testing.assert_allclose(info["final_obs"][0], [5 / 8, 4 / 8])
    np.testing.assert_allclose(obs[0], [0.5, 0.5])  # next episode starts at the centre again
    rewards = [env.step(_act(a))[1][0] for a in [RIGHT, NOOP]]  # once per *episode*
    assert rewards == [1, 0]
    # an episode that never reaches the goal is not a success
    env = _dark_room(goal=(0, 0), episode_length=3)
    info = [env.step(_act(NOOP))[4] for _ in range(3)][-1]
    assert info["_success"][0] and not info["success"][0]


def test_dark_room_random_start_covers_grid():
    env = DarkRoomVectorEnv(2000, random_start=True)
    env.reset(seed=3)
    cells = env.get_state()["pos"] @ np.array([1, 9])
    assert len(np.unique(cells)) == 81


def test_border_moves_stay():
    env = DarkRoomVectorEnv(1, size=5)
    env.reset(seed=0)
    state = env.get_state()
    for corner, moves in [((0, 0), [UP, LEFT]), ((4, 4), [DOWN, RIGHT])]:
        state["pos"][0] = corner
        state["goal"][0] = (2, 2)
        env.set_state(state)
        for a in moves:
            obs = env.step(_act(a))[0]
            np.testing.assert_allclose(obs[0], np.array(corner) / 4)
    state["pos"][0] = (2, 2)
    env.set_state(state)
    for a, target in [(UP, (2, 1)), (DOWN, (2, 2)), (LEFT, (1, 2)), (RIGHT, (2, 2)), (NOOP, (2, 2))]:
        np.testing.assert_allclose(env.step(_act(a))[0][0], np.array(target) / 4)


# ---- trials, autoreset --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls,task_keys", [(DarkRoomVectorEnv, ("goal",)), (DarkKeyToDoorVectorEnv, ("key", "door"))]
)
def test_task_persists_within_trial_and_changes_after(cls, task_keys):
    n, trial_length, episode_length = 32, 35, 10
    env = cls(n, episode_length=episode_length, trial_length=trial_length)
    env.reset(seed=5)
    rng = np.random.default_rng(0)

    def task():
        s = env.get_state()
        return np.concatenate([s[k] for k in task_keys], axis=1)

    current = task()
    episode_steps = np.zeros(n, int)
    for t in range(1, 3 * trial_length + 1):
        obs, rew, term, trunc, info = env.step(rng.integers(0, 5, n))
        episode_steps += 1
        is_end = t % trial_length == 0
        assert np.all(info["trial_end"] == is_end)
        np.testing.assert_array_equal(info["trial_step"], np.full(n, t % trial_length))
        done = term | trunc
        np.testing.assert_array_equal(info["_final_obs"], done)
        assert not np.any(term & trunc)
        # truncation exactly at the episode length or the trial end (unless terminated then)
        np.testing.assert_array_equal(trunc, ~term & ((episode_steps == episode_length) | is_end))
        episode_steps[done] = 0
        if is_end:
            assert np.all(done)
            new = task()
            assert np.any(new != current)  # a new task was drawn (32 envs: some differ)
            current = new
        else:
            np.testing.assert_array_equal(task(), current)


def test_same_step_autoreset_final_obs():
    env = _dark_room(goal=(0, 0), n=2, episode_length=3)
    for _ in range(2):
        env.step(np.array([RIGHT, UP]))
    obs, rew, term, trunc, info = env.step(np.array([RIGHT, UP]))
    assert np.all(trunc) and np.all(info["_final_obs"])
    np.testing.assert_allclose(info["final_obs"], [[7 / 8, 4 / 8], [4 / 8, 1 / 8]])
    np.testing.assert_allclose(obs, np.full((2, 2), 0.5))


# ---- determinism and state ----------------------------------------------------------------------


def _rollout(env, seed, actions):
    out = [env.reset(seed=seed)[0]]
    for a in actions:
        obs, rew, term, trunc, info = env.step(a)
        out += [obs, rew, term, trunc, info["final_obs"], info["trial_end"], info["trial_step"]]
    return out


@pytest.mark.parametrize("cls", [DarkRoomVectorEnv, DarkKeyToDoorVectorEnv])
def test_determinism(cls):
    actions = np.random.default_rng(0).integers(0, 5, (300, 16))
    kwargs = (
        dict(trial_length=120) if cls is DarkKeyToDoorVectorEnv else dict(trial_length=120, random_start=True)
    )
    a = _rollout(cls(16, **kwargs), 7, actions)
    b = _rollout(cls(16, **kwargs), 7, actions)
    c = _rollout(cls(16, **kwargs), 8, actions)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))
    # env i's stream does not depend on the number of envs
    d = cls(4, **kwargs)
    d.reset(seed=7)
    big = cls(16, **kwargs)
    big.reset(seed=7)
    for k in d.get_state():
        np.testing.assert_array_equal(d.get_state()[k], big.get_state()[k][:4])


def test_unseeded_first_reset_uses_entropy():
    a, b = DarkKeyToDoorVectorEnv(64), DarkKeyToDoorVectorEnv(64)
    a.reset()
    b.reset()
    assert not np.array_equal(a.get_state()["rng"], b.get_state()["rng"])
    # a later reset without seed continues the streams instead of reseeding
    rng_before = a.get_state()["rng"]
    a.reset()
    assert not np.array_equal(a.get_state()["rng"], rng_before)


@pytest.mark.parametrize("cls", [DarkRoomVectorEnv, DarkKeyToDoorVectorEnv])
def test_get_set_state_continues_bit_identically(cls):
    n = 8
    actions = np.random.default_rng(1).integers(0, 5, (400, n))
    env = cls(n, trial_length=70)
    env.reset(seed=3)
    for a in actions[:37]:
        env.step(a)
    state = env.get_state()
    first = [x for a in actions[37:] for x in _flatten(env.step(a))]

    restored = cls(n, trial_length=70)
    restored.set_state(state)
    np.testing.assert_array_equal(restored.observe(), _obs_from_state(cls, state))
    second = [x for a in actions[37:] for x in _flatten(restored.step(a))]
    for x, y in zip(first, second, strict=True):
        np.testing.assert_array_equal(x, y)
    for k, v in env.get_state().items():
        np.testing.assert_array_equal(v, restored.get_state()[k])
        assert v.dtype == state[k].dtype
    with pytest.raises(ValueError, match="state keys"):
        restored.set_state({"pos": state["pos"]})


def _flatten(step_out):
    obs, rew, term, trunc, info = step_out
    return [obs, rew, term, trunc, *info.values()]


def _obs_from_state(cls, state):
    xy = state["pos"] / 8
    if cls is DarkRoomVectorEnv:
        return xy.astype(np.float32)
    extra = np.stack([state["has_key"], state["episode_step"] / 50], axis=1)
    return np.concatenate([xy, extra], axis=1).astype(np.float32)


# ---- gymnasium integration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "env_id,cls,dim",
    [("memo_rl/DarkRoom-v0", DarkRoomVectorEnv, 2), ("memo_rl/DarkKeyToDoor-v0", DarkKeyToDoorVectorEnv, 4)],
)
def test_make_vec_returns_batched_env(env_id, cls, dim):
    env = gym.make_vec(env_id, num_envs=8, trial_length=100)
    assert type(env) is cls and env.num_envs == 8 and env.trial_length == 100
    assert env.single_observation_space == gym.spaces.Box(0, 1, (dim,), np.float32)
    assert env.observation_space.shape == (8, dim) and env.observation_space.dtype == np.float32
    assert env.single_action_space == gym.spaces.Discrete(5)
    assert env.action_space == gym.spaces.MultiDiscrete([5] * 8)
    assert env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    obs, info = env.reset(seed=0)
    assert obs in env.observation_space
    obs, rew, term, trunc, info = env.step(env.action_space.sample())
    assert obs in env.observation_space and rew.dtype == np.float32 and rew.shape == (8,)
    assert term.dtype == np.bool_ and trunc.dtype == np.bool_
    assert set(info) == {"final_obs", "_final_obs", "trial_end", "success", "_success", "trial_step"}
    assert info["trial_step"].dtype == np.int32 and info["final_obs"].shape == (8, dim)


def test_registration_idempotent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.reload(envs)
        importlib.reload(envs)
    assert gym.spec("memo_rl/DarkRoom-v0").vector_entry_point == "envs.gridworld:DarkRoomVectorEnv"


@pytest.mark.parametrize(
    "env_id,cls", [("memo_rl/DarkRoom-v0", DarkRoomEnv), ("memo_rl/DarkKeyToDoor-v0", DarkKeyToDoorEnv)]
)
def test_check_env_single(env_id, cls):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        made = gym.make(env_id)
        assert isinstance(made.unwrapped, cls)
        check_env(made.unwrapped)
        check_env(cls())
    # the only acceptable warning: no spec on a directly constructed env (alternative render modes)
    problems = [str(w.message) for w in caught if "not having a spec" not in str(w.message)]
    assert not problems, problems


def test_single_env_trial_semantics():
    env = DarkKeyToDoorEnv(episode_length=4, trial_length=10)
    obs, info = env.reset(seed=0)
    assert info["trial_step"] == 0 and info["new_trial"]
    state = env.get_state()
    state["key"][0], state["door"][0], state["pos"][0] = (0, 0), (8, 8), (4, 4)
    env.set_state(state)
    task = ((0, 0), (8, 8))
    for _ in range(4):
        obs, rew, term, trunc, info = env.step(NOOP)
    assert trunc and not term and not info["trial_end"] and info["trial_step"] == 4
    assert info["success"] is False
    np.testing.assert_allclose(obs, [0.5, 0.5, 0, 1.0])  # the episode's final obs
    obs, info = env.reset()  # next episode, same trial
    assert info["trial_step"] == 4 and not info["new_trial"] and obs[3] == 0
    s = env.get_state()
    assert tuple(s["key"][0]) == task[0] and tuple(s["door"][0]) == task[1]
    for _ in range(4):
        env.step(NOOP)
    env.reset()
    obs, rew, term, trunc, info = env.step(NOOP)
    obs, rew, term, trunc, info = env.step(NOOP)  # step 10: trial ends, episode truncated
    assert trunc and info["trial_end"] and info["trial_step"] == 0
    obs, info = env.reset()
    assert info["new_trial"] and info["trial_step"] == 0
    # a reset in the middle of an episode, or with options new_trial, starts a new trial
    env.step(NOOP)
    assert env.reset()[1]["new_trial"]
    env.step(NOOP)
    env.step(NOOP)
    assert env.reset(options={"new_trial": True})[1]["trial_step"] == 0


# ---- rendering ----------------------------------------------------------------------------------


def _cell_centre(frame, xy):
    return frame[xy[1] * CELL_PX + CELL_PX // 2, xy[0] * CELL_PX + CELL_PX // 2]


def _cell_corner(frame, xy):  # inside the cell, outside the agent square
    return frame[xy[1] * CELL_PX + 1, xy[0] * CELL_PX + 1]


def test_render_vector_and_single():
    env = DarkKeyToDoorVectorEnv(3, render_mode="rgb_array")
    env.reset(seed=2)
    frames = env.render()
    assert frames.shape == (3, 72, 72, 3) and frames.dtype == np.uint8
    s = env.get_state()
    for i in range(3):
        np.testing.assert_array_equal(_cell_centre(frames[i], s["pos"][i]), AGENT_COLOR)
        np.testing.assert_array_equal(_cell_centre(frames[i], s["key"][i]), KEY_COLOR)
        np.testing.assert_array_equal(_cell_centre(frames[i], s["door"][i]), DOOR_COLOR)
        assert (frames[i] == AGENT_COLOR).all(-1).sum() == 25  # one 5x5 agent square
    # the key disappears once picked up; the agent is drawn on top of the goal
    s["has_key"][0] = True
    s["pos"][1] = s["door"][1]
    env.set_state(s)
    frames = env.render()
    assert not (frames[0] == KEY_COLOR).all(-1).any()
    np.testing.assert_array_equal(_cell_centre(frames[1], s["door"][1]), AGENT_COLOR)
    np.testing.assert_array_equal(_cell_corner(frames[1], s["door"][1]), DOOR_COLOR)

    single = gym.make("memo_rl/DarkRoom-v0", render_mode="rgb_array", size=5)
    single.reset(seed=0)
    frame = single.render()
    assert frame.shape == (40, 40, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(_cell_centre(frame, (2, 2)), AGENT_COLOR)
    goal = single.unwrapped.get_state()["goal"][0]
    assert (frame == GOAL_COLOR).all(-1).any()
    np.testing.assert_array_equal(_cell_corner(frame, goal), GOAL_COLOR)
    unrendered = DarkRoomVectorEnv(2)
    unrendered.reset(seed=0)
    with pytest.warns(UserWarning, match="render_mode=None"):
        assert unrendered.render() is None


# ---- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(trial_length=0), "trial_length must be an int >= 1, got 0"),
        (dict(size=1), "size must be an int in [2, 46340], got 1"),
        (dict(episode_length=0), "episode_length must be an int >= 1, got 0"),
        (dict(episode_length=2.5), "episode_length must be an int >= 1, got 2.5"),
        (dict(num_envs=0), "num_envs must be an int >= 1, got 0"),
        (dict(render_mode="human"), "render_mode must be None or one of ['rgb_array'], got 'human'"),
        (dict(reward_once=1), "reward_once must be a bool (True or False), got 1"),
    ],
)
def test_argument_validation(kwargs, message):
    args = {"num_envs": 2, **kwargs}
    with pytest.raises(ValueError) as excinfo:
        DarkRoomVectorEnv(**args)
    assert str(excinfo.value) == message
    if "reward_once" not in kwargs:
        with pytest.raises(ValueError):
            DarkKeyToDoorVectorEnv(**args)


def test_bad_actions_and_order():
    env = DarkKeyToDoorVectorEnv(2)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(2, np.int64))
    env.reset(seed=0)
    before = env.get_state()
    with pytest.raises(ValueError, match=r"actions must be in \[0, 4\], got 5 for env 1"):
        env.step(np.array([0, 5]))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3, np.int64))
    for k, v in env.get_state().items():  # a rejected step changes nothing
        np.testing.assert_array_equal(v, before[k])
    env.step(np.array([1, 2], np.int32))  # other integer dtypes are accepted


def test_state_survives_torch_weights_only_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    env = DarkKeyToDoorVectorEnv(4)
    env.reset(seed=0)
    env.step(np.arange(4) % 5)
    state = env.get_state()
    path = tmp_path / "state.pt"
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, path)
    loaded = torch.load(path, weights_only=True)
    restored = DarkKeyToDoorVectorEnv(4)
    restored.set_state(loaded)  # tensors are accepted as they are
    actions = np.array([1, 2, 3, 4])
    for x, y in zip(_flatten(env.step(actions)), _flatten(restored.step(actions)), strict=True):
        np.testing.assert_array_equal(x, y)
