"""Numba task kernels of Nav3D (ExtObjNav and MultiON): episode starts, steps, rewards, metrics.

Per-env state arrays (owned by ``vector.py``; see ``_world.py`` for the geometry):

- ``grid`` uint8 [N, G, G], ``room_tint`` uint8 [N, rooms**2], ``obj_pos`` float64 [N, K, 2],
  ``obj_color`` int32 [N, K]: the layout (fixed within a trial).
- ``pose``/``start`` float64 [N, 3]: agent (x, y, theta) now / at the episode start.
- ``goal_seq`` int32 [N, k]: object indices to find in order (k = 1 for ExtObjNav); ``goal_idx``
  int32 [N]: index of the current goal in ``goal_seq`` (= goals found so far).
- ``path_len``, ``shortest``, ``prev_dist`` float64 [N]: metres travelled this episode, the
  reference path length of the episode's SPL, straight-line distance to the current goal before
  this step.
- ``episode_step``/``trial_step`` int32 [N]; ``rng`` uint64 [N].

Actions: 0 stop, 1 forward ``FORWARD`` m, 2 turn left ``TURN``, 3 turn right ``TURN``.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from envs.gridworld._kernels import _randint

from ._world import (
    START_CLEARANCE,
    TURN,
    line_of_sight,
    move_forward,
    new_layout,
    random_start,
    wrap_angle,
)

NUM_ACTIONS = 4
STOP, FORWARD, LEFT, RIGHT = range(NUM_ACTIONS)
EXT_OBJ_NAV, MULTI_ON = 0, 1


@numba.njit(cache=True)
def _dist(obj_pos, pose, i, k):
    return math.sqrt((pose[i, 0] - obj_pos[i, k, 0]) ** 2 + (pose[i, 1] - obj_pos[i, k, 1]) ** 2)


@numba.njit(cache=True)
def new_episode(
    i, task, rooms, success_distance, grid, obj_pos, pose, start, goal_seq, goal_idx, path_len,
    shortest, prev_dist, episode_step, rng,
):  # fmt: skip
    """Draw env i's goals (k distinct objects in random order) and a random free start pose.

    ExtObjNav starts at least ``success_distance + START_CLEARANCE`` m from the target and its SPL
    reference is the straight-line distance to the success disk, ``d(start, target) - success_distance``;
    MultiON starts anywhere and its reference is the straight-line tour start -> g1 -> ... -> gk
    between object centres (as MultiON's geodesic tour, Wani et al. 2020, with straight lines).
    """
    n_obj, k = obj_pos.shape[1], goal_seq.shape[1]
    perm = np.arange(n_obj)
    for j in range(k):
        r = j + _randint(rng, i, n_obj - j)
        perm[j], perm[r] = perm[r], perm[j]
        goal_seq[i, j] = perm[j]
    if task == EXT_OBJ_NAV:
        random_start(i, rooms, grid, obj_pos, goal_seq[i, 0], success_distance + START_CLEARANCE, pose, rng)
        ref = max(_dist(obj_pos, pose, i, goal_seq[i, 0]) - success_distance, 0.0)
    else:
        random_start(i, rooms, grid, obj_pos, -1, 0.0, pose, rng)
        ref = _dist(obj_pos, pose, i, goal_seq[i, 0])
        for j in range(1, k):
            a, b = goal_seq[i, j - 1], goal_seq[i, j]
            ref += math.sqrt(
                (obj_pos[i, a, 0] - obj_pos[i, b, 0]) ** 2 + (obj_pos[i, a, 1] - obj_pos[i, b, 1]) ** 2
            )
    for c in range(3):
        start[i, c] = pose[i, c]
    goal_idx[i] = 0
    path_len[i] = 0.0
    shortest[i] = ref
    prev_dist[i] = _dist(obj_pos, pose, i, goal_seq[i, 0])
    episode_step[i] = 0


@numba.njit(cache=True)
def reset_all(
    task, rooms, success_distance, grid, room_tint, n_tints, obj_pos, obj_color, pose, start, goal_seq,
    goal_idx, path_len, shortest, prev_dist, episode_step, trial_step, rng,
):  # fmt: skip
    """Start a new trial (new layout) and its first episode in every env."""
    for i in range(pose.shape[0]):
        new_layout(i, rooms, grid, room_tint, n_tints, obj_pos, obj_color, rng)
        new_episode(
            i, task, rooms, success_distance, grid, obj_pos, pose, start, goal_seq, goal_idx, path_len,
            shortest, prev_dist, episode_step, rng,
        )  # fmt: skip
        trial_step[i] = 0


@numba.njit(cache=True)
def step(
    actions, task, episode_length, trial_length, success_distance, goal_reward, slack, half_fov,
    grid, obj_pos, pose, goal_seq, goal_idx, path_len, shortest, prev_dist, episode_step, trial_step,
    rewards, terminated, truncated, done, trial_end, success, spl, progress, trial_step_out,
):  # fmt: skip
    """Apply one action per env WITHOUT autoreset (``autoreset`` follows); returns -1, or the index
    of the first invalid action (then nothing has changed).

    Reward: ``prev_dist - dist`` (straight-line distance to the current goal) ``- slack``, plus
    ``goal_reward`` for a successful stop. ``stop``: ExtObjNav succeeds within ``success_distance`` of
    the target with the target in line of sight, and ends the episode either way; MultiON advances to
    the next goal within ``success_distance`` of the current one (success after the last) and
    otherwise ends the episode as a failure. Episodes are truncated after ``episode_length`` steps
    and at the end of a trial (``trial_length`` steps; 0 = each episode is its own trial).
    """
    for i in range(actions.shape[0]):
        if actions[i] < 0 or actions[i] >= NUM_ACTIONS:
            return i
    k = goal_seq.shape[1]
    for i in range(actions.shape[0]):
        a = actions[i]
        if a == FORWARD:
            path_len[i] += move_forward(grid, obj_pos, pose, i)
        elif a == LEFT:
            pose[i, 2] = wrap_angle(pose[i, 2] + TURN)
        elif a == RIGHT:
            pose[i, 2] = wrap_angle(pose[i, 2] - TURN)
        g = goal_seq[i, goal_idx[i]]
        d = _dist(obj_pos, pose, i, g)
        r = prev_dist[i] - d - slack
        prev_dist[i] = d
        term = False
        won = False
        if a == STOP:
            term = True
            if task == EXT_OBJ_NAV:
                won = d <= success_distance and line_of_sight(
                    grid, obj_pos, i, pose[i, 0], pose[i, 1], pose[i, 2], g, half_fov
                )
                if won:
                    r += goal_reward
            elif d <= success_distance:
                r += goal_reward
                goal_idx[i] += 1
                if goal_idx[i] == k:
                    won = True
                else:
                    term = False
                    prev_dist[i] = _dist(obj_pos, pose, i, goal_seq[i, goal_idx[i]])
        et = episode_step[i] + 1
        tt = trial_step[i] + 1
        t_end = trial_length > 0 and tt >= trial_length
        trunc = (not term) and (et >= episode_length or t_end)
        ended = term or trunc
        if trial_length == 0:
            t_end = ended
        rewards[i] = np.float32(r)
        terminated[i] = term
        truncated[i] = trunc
        done[i] = ended
        trial_end[i] = t_end
        success[i] = won
        denom = max(path_len[i], shortest[i])
        spl[i] = np.float32(0.0 if not won else (shortest[i] / denom if denom > 0.0 else 1.0))
        progress[i] = np.float32(goal_idx[i] / k if task == MULTI_ON else (1.0 if won else 0.0))
        episode_step[i] = et
        trial_step[i] = tt
        trial_step_out[i] = 0 if t_end else tt
    return -1


@numba.njit(cache=True)
def autoreset(
    done, trial_end, task, rooms, success_distance, grid, room_tint, n_tints, obj_pos, obj_color, pose,
    start, goal_seq, goal_idx, path_len, shortest, prev_dist, episode_step, trial_step, rng,
):  # fmt: skip
    """Start the next episode in every env with ``done`` (in a new layout where ``trial_end``)."""
    for i in range(done.shape[0]):
        if not done[i]:
            continue
        if trial_end[i]:
            new_layout(i, rooms, grid, room_tint, n_tints, obj_pos, obj_color, rng)
            trial_step[i] = 0
        new_episode(
            i, task, rooms, success_distance, grid, obj_pos, pose, start, goal_seq, goal_idx, path_len,
            shortest, prev_dist, episode_step, rng,
        )  # fmt: skip
