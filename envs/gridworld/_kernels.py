"""Numba kernels for the batched gridworlds (Dark Room, Dark Key-to-Door).

Every kernel loops over all N envs in one compiled call. State lives in plain numpy arrays owned by
the Python classes in ``vector.py``:

- ``pos`` int32 [N, 2]: agent (x, y); x is the column, y the row (y = 0 is the top row).
- Dark Room: ``goal`` int32 [N, 2], ``reached`` bool [N] (goal reached in this episode).
- Key-to-Door: ``key``/``door`` int32 [N, 2], ``has_key`` bool [N].
- ``episode_step``/``trial_step`` int32 [N]: steps done in the current episode / trial.
- ``rng`` uint64 [N]: one splitmix64 stream per env (Steele et al. 2014), so results do not depend
  on the number of threads and the whole state can be saved and restored.

Actions: 0 no-op, 1 up (y - 1), 2 down (y + 1), 3 left (x - 1), 4 right (x + 1); moving into the
border leaves the agent where it is.
"""

from __future__ import annotations

import numba
import numpy as np

NUM_ACTIONS = 5

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)


# ---------------------------------------------------------------------------------------------
# RNG: splitmix64, one uint64 counter per env
# ---------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _mix64(z):
    """The splitmix64 finalizer: a bijection on uint64 with good avalanche."""
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@numba.njit(cache=True)
def _next_u64(rng, i):
    s = rng[i] + _GOLDEN
    rng[i] = s
    return _mix64(s)


@numba.njit(cache=True)
def _randint(rng, i, n):
    """Uniform integer in [0, n) for 0 < n << 2**64 (modulo bias below n / 2**64)."""
    return np.int64(_next_u64(rng, i) % np.uint64(n))


@numba.njit(cache=True)
def seed_rng(rng, seed):
    """Fill ``rng`` [N] with independent stream states derived from (seed, env index)."""
    base = _mix64(np.uint64(seed) + _GOLDEN)
    for i in range(rng.shape[0]):
        rng[i] = _mix64(base ^ _mix64(np.uint64(i) * _GOLDEN + _MIX1))


@numba.njit(cache=True)
def random_u64(rng, out):
    """Draw one uint64 per env (used by tests to compare streams)."""
    for i in range(rng.shape[0]):
        out[i] = _next_u64(rng, i)


@numba.njit(cache=True)
def check_actions(actions):
    """Index of the first action outside [0, NUM_ACTIONS), or -1 if all are valid."""
    for i in range(actions.shape[0]):
        a = actions[i]
        if a < 0 or a >= NUM_ACTIONS:
            return i
    return -1


@numba.njit(cache=True)
def _move(pos, i, a, size):
    x = pos[i, 0]
    y = pos[i, 1]
    if a == 1:
        if y > 0:
            y -= 1
    elif a == 2:
        if y < size - 1:
            y += 1
    elif a == 3:
        if x > 0:
            x -= 1
    elif a == 4:
        if x < size - 1:
            x += 1
    pos[i, 0] = x
    pos[i, 1] = y
    return x, y


# ---------------------------------------------------------------------------------------------
# Dark Room
# ---------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _dr_write_obs(out, i, x, y, size):
    out[i, 0] = np.float32(x / (size - 1))
    out[i, 1] = np.float32(y / (size - 1))


@numba.njit(cache=True)
def _dr_new_task(i, size, goal, rng):
    c = _randint(rng, i, size * size)
    goal[i, 0] = c % size
    goal[i, 1] = c // size


@numba.njit(cache=True)
def _dr_start_episode(i, size, random_start, pos, reached, episode_step, rng):
    if random_start:
        c = _randint(rng, i, size * size)
        pos[i, 0] = c % size
        pos[i, 1] = c // size
    else:
        pos[i, 0] = size // 2
        pos[i, 1] = size // 2
    reached[i] = False
    episode_step[i] = 0


@numba.njit(cache=True)
def dark_room_reset(size, random_start, pos, goal, reached, episode_step, trial_step, rng, obs):
    """Start a new trial (new goal) and its first episode in every env."""
    for i in range(pos.shape[0]):
        _dr_new_task(i, size, goal, rng)
        _dr_start_episode(i, size, random_start, pos, reached, episode_step, rng)
        trial_step[i] = 0
        _dr_write_obs(obs, i, pos[i, 0], pos[i, 1], size)


@numba.njit(cache=True)
def dark_room_observe(size, pos, obs):
    for i in range(pos.shape[0]):
        _dr_write_obs(obs, i, pos[i, 0], pos[i, 1], size)


@numba.njit(cache=True)
def dark_room_step(
    actions, size, episode_length, trial_length, random_start, reward_once,
    pos, goal, reached, episode_step, trial_step, rng,
    obs, rewards, terminated, truncated, final_obs, done, done2, trial_end, success, trial_step_out,
):  # fmt: skip
    """Step every env once, with same-step autoreset; returns -1, or the index of the first
    invalid action (then nothing has changed).

    ``final_obs`` receives the post-step observation of every env (before any autoreset);
    ``obs`` the observation the agent acts on next (the first of a new episode where one ended).
    """
    bad = check_actions(actions)
    if bad >= 0:
        return bad
    for i in range(pos.shape[0]):
        x, y = _move(pos, i, actions[i], size)
        et = episode_step[i] + 1
        tt = trial_step[i] + 1
        on_goal = x == goal[i, 0] and y == goal[i, 1]
        r = np.float32(0.0)
        if on_goal:
            if not (reward_once and reached[i]):
                r = np.float32(1.0)
            reached[i] = True
        t_end = tt >= trial_length
        trunc = et >= episode_length or t_end
        rewards[i] = r
        terminated[i] = False
        truncated[i] = trunc
        done[i] = trunc
        done2[i] = trunc
        trial_end[i] = t_end
        success[i] = reached[i]
        _dr_write_obs(final_obs, i, x, y, size)
        if trunc:
            if t_end:
                _dr_new_task(i, size, goal, rng)
                tt = 0
            _dr_start_episode(i, size, random_start, pos, reached, episode_step, rng)
            _dr_write_obs(obs, i, pos[i, 0], pos[i, 1], size)
        else:
            episode_step[i] = et
            obs[i, 0] = final_obs[i, 0]
            obs[i, 1] = final_obs[i, 1]
        trial_step[i] = tt
        trial_step_out[i] = tt
    return -1


# ---------------------------------------------------------------------------------------------
# Dark Key-to-Door
# ---------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _kd_write_obs(out, i, x, y, has_key, t, size, episode_length):
    out[i, 0] = np.float32(x / (size - 1))
    out[i, 1] = np.float32(y / (size - 1))
    out[i, 2] = np.float32(1.0) if has_key else np.float32(0.0)
    out[i, 3] = np.float32(t / episode_length)


@numba.njit(cache=True)
def _kd_new_task(i, size, key, door, rng):
    """Key and door: two distinct cells, uniform over the size^2 * (size^2 - 1) ordered pairs."""
    n = size * size
    k = _randint(rng, i, n)
    d = _randint(rng, i, n - 1)
    if d >= k:
        d += 1
    key[i, 0] = k % size
    key[i, 1] = k // size
    door[i, 0] = d % size
    door[i, 1] = d // size


@numba.njit(cache=True)
def _kd_start_episode(i, size, pos, key, door, has_key, episode_step, rng):
    """Uniform start over the size^2 - 2 cells that are neither the key nor the door."""
    k = key[i, 1] * size + key[i, 0]
    d = door[i, 1] * size + door[i, 0]
    lo = min(k, d)
    hi = max(k, d)
    c = _randint(rng, i, size * size - 2)
    if c >= lo:
        c += 1
    if c >= hi:
        c += 1
    pos[i, 0] = c % size
    pos[i, 1] = c // size
    has_key[i] = False
    episode_step[i] = 0


@numba.njit(cache=True)
def key_door_reset(size, episode_length, pos, key, door, has_key, episode_step, trial_step, rng, obs):
    """Start a new trial (new key and door) and its first episode in every env."""
    for i in range(pos.shape[0]):
        _kd_new_task(i, size, key, door, rng)
        _kd_start_episode(i, size, pos, key, door, has_key, episode_step, rng)
        trial_step[i] = 0
        _kd_write_obs(obs, i, pos[i, 0], pos[i, 1], False, 0, size, episode_length)


@numba.njit(cache=True)
def key_door_observe(size, episode_length, pos, has_key, episode_step, obs):
    for i in range(pos.shape[0]):
        _kd_write_obs(obs, i, pos[i, 0], pos[i, 1], has_key[i], episode_step[i], size, episode_length)


@numba.njit(cache=True)
def key_door_step(
    actions, size, episode_length, trial_length,
    pos, key, door, has_key, episode_step, trial_step, rng,
    obs, rewards, terminated, truncated, final_obs, done, done2, trial_end, success, trial_step_out,
):  # fmt: skip
    """Step every env once, with same-step autoreset (see ``dark_room_step``)."""
    bad = check_actions(actions)
    if bad >= 0:
        return bad
    for i in range(pos.shape[0]):
        x, y = _move(pos, i, actions[i], size)
        et = episode_step[i] + 1
        tt = trial_step[i] + 1
        r = np.float32(0.0)
        term = False
        hk = has_key[i]
        if not hk:
            if x == key[i, 0] and y == key[i, 1]:
                hk = True
                has_key[i] = True
                r = np.float32(1.0)
        elif x == door[i, 0] and y == door[i, 1]:
            r = np.float32(1.0)
            term = True
        t_end = tt >= trial_length
        trunc = (not term) and (et >= episode_length or t_end)
        d = term or trunc
        rewards[i] = r
        terminated[i] = term
        truncated[i] = trunc
        done[i] = d
        done2[i] = d
        trial_end[i] = t_end
        success[i] = term
        _kd_write_obs(final_obs, i, x, y, hk, et, size, episode_length)
        if d:
            if t_end:
                _kd_new_task(i, size, key, door, rng)
                tt = 0
            _kd_start_episode(i, size, pos, key, door, has_key, episode_step, rng)
            _kd_write_obs(obs, i, pos[i, 0], pos[i, 1], False, 0, size, episode_length)
        else:
            episode_step[i] = et
            for j in range(4):
                obs[i, j] = final_obs[i, j]
        trial_step[i] = tt
        trial_step_out[i] = tt
    return -1


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def render_frames(frames, cell, obj_pos, obj_visible, obj_color, agent_pos, agent_color, floor, line):
    """Draw N frames [N, size*cell, size*cell, 3] (uint8).

    Grid lines on the first pixel row/column of each cell; object k fills the inside of its cell
    where ``obj_visible[n, k]``; the agent is a square inset by 2 px drawn on top, so an object
    under the agent stays visible around it.
    """
    n_env, h, w, _ = frames.shape
    n_obj = obj_pos.shape[1]
    for n in range(n_env):
        for py in range(h):
            for px in range(w):
                on_line = py % cell == 0 or px % cell == 0
                for c in range(3):
                    frames[n, py, px, c] = line[c] if on_line else floor[c]
        for k in range(n_obj):
            if obj_visible[n, k]:
                x0 = obj_pos[n, k, 0] * cell
                y0 = obj_pos[n, k, 1] * cell
                for py in range(y0 + 1, y0 + cell):
                    for px in range(x0 + 1, x0 + cell):
                        for c in range(3):
                            frames[n, py, px, c] = obj_color[k, c]
        x0 = agent_pos[n, 0] * cell
        y0 = agent_pos[n, 1] * cell
        inset = 2 if cell >= 6 else 1 if cell >= 3 else 0
        for py in range(y0 + inset, y0 + cell - inset + (1 if inset > 0 else 0)):
            for px in range(x0 + inset, x0 + cell - inset + (1 if inset > 0 else 0)):
                for c in range(3):
                    frames[n, py, px, c] = agent_color[c]
