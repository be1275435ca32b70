"""MiniGrid support: the success flag MiniGrid does not report, and its symbolic view as one-hot.

MiniGrid pays a positive reward only when the mission is accomplished (for the Memory tasks:
picking the object that matches the one shown at the start), and ends the episode with zero reward
otherwise (wrong object, or the step limit). :class:`SuccessInfo` turns that into
``info["success"]`` at the end of each episode, so success rates show up in the training progress
line, TensorBoard and ``memo-rl eval`` like they do for our own envs.

MiniGrid's symbolic view holds three small category indices per cell (object type, colour,
state) but declares them as ``Box(0, 255)``; scaled by the declared bounds, a key (5) and a ball
(6) differ by 0.004 at the network's input. :class:`SymbolicOneHot` gives each category its own
0/1 channel instead, so the object that decides a Memory episode is as visible to the agent as a
wall. The MiniGrid presets apply it; an RGB wrapper replaces it (``env.wrappers`` is a list).

MiniGrid gives every task its 7 actions (left, right, forward, pickup, drop, toggle, done); in the
Memory tasks the last four do nothing. :class:`NavigationActions` keeps the first three, as memory
benchmarks built on these tasks do, so exploration is not spent mostly on no-ops.

:class:`LargeTileRGBView` draws the RGB partial view in 28-pixel tiles (84x84 for a 3x3 view), the
input that recurrent-PPO baselines on these tasks give their CNN, for comparisons with them.

:class:`CueInViewAtStart` is a diagnostic variant of the Memory tasks, not a benchmark: every
episode starts next to the cue, so the cue is in view at the first step and the exploration part
of the task is gone; what is left is remembering the cue along the hallway and comparing it with
the object seen at the split.

:class:`FirstVisitBonus` is an exploration bonus for training: a small reward the first time in an
episode the agent steps on each cell. In the Memory tasks the agent usually starts past the cue,
facing away from it, and nothing in MiniGrid's reward leads it back to look; the bonus does
(docs/results.md, MiniGrid section). Success is still judged on MiniGrid's own reward.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX
from minigrid.wrappers import RGBImgPartialObsWrapper

__all__ = ["CueInViewAtStart", "FirstVisitBonus", "LargeTileRGBView", "NavigationActions", "SuccessInfo", "SymbolicOneHot"]

# Channel blocks of the one-hot view: object types, then colours, then door states.
ONE_HOT_CHANNELS = len(OBJECT_TO_IDX) + len(COLOR_TO_IDX) + len(STATE_TO_IDX)


def minigrid_success(terminated: bool, reward: float) -> float:
    """MiniGrid's success at an episode's end: it terminated (not truncated) with a positive reward."""
    return float(terminated and reward > 0)


class SuccessInfo(gym.Wrapper):
    """Adds ``info["success"]`` (1.0 or 0.0) on the step that ends an episode: success means the
    episode terminated (not truncated) with a positive reward. A flag set below it (by a wrapper
    that changes the reward, such as :class:`FirstVisitBonus`) is kept."""

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if (terminated or truncated) and "success" not in info:
            info = {**info, "success": minigrid_success(terminated, reward)}
        return obs, reward, terminated, truncated, info


class SymbolicOneHot(gym.ObservationWrapper):
    """MiniGrid's symbolic ``image`` ``[H, W, 3]`` (object, colour, state indices) as one-hot
    channels ``[H, W, 20]``: 11 object types, then 6 colours, then 3 states, declared
    ``Box(0, 1, uint8)`` so the encoder feeds them at unit scale. Other keys pass through.

    Works on the partial view (``agent_view_size``) and on ``FullyObsWrapper``'s grid; anything
    else named ``image`` (an RGB rendering, say) is refused at construction with a ValueError.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.observation_space
        image = space.spaces.get("image") if isinstance(space, spaces.Dict) else None
        base = env.unwrapped
        symbolic_shapes = {(base.agent_view_size, base.agent_view_size, 3), (base.width, base.height, 3)}
        if image is None or image.shape not in symbolic_shapes:
            got = "no 'image' key" if image is None else f"an image of shape {image.shape}"
            raise ValueError(
                f"SymbolicOneHot needs MiniGrid's symbolic view (an 'image' of shape {(base.agent_view_size,) * 2 + (3,)}), "
                f"got {got}; it cannot follow a wrapper that renders pixels (for RGB observations leave it out)")
        height, width = image.shape[:2]
        self._offsets = np.array([0, len(OBJECT_TO_IDX), len(OBJECT_TO_IDX) + len(COLOR_TO_IDX)], dtype=np.int64)
        one_hot = spaces.Box(0, 1, (height, width, ONE_HOT_CHANNELS), np.uint8)
        self.observation_space = spaces.Dict({**space.spaces, "image": one_hot})

    def observation(self, obs: dict[str, Any]) -> dict[str, Any]:
        image = obs["image"]  # [H, W, 3]: object, colour, state index of each cell
        channel = image.astype(np.int64) + self._offsets  # [H, W, 3]: the channel each index lights
        one_hot = np.zeros((*image.shape[:2], ONE_HOT_CHANNELS), dtype=np.uint8)  # [H, W, 20]
        np.put_along_axis(one_hot, channel, 1, axis=-1)
        return {**obs, "image": one_hot}


class LargeTileRGBView(RGBImgPartialObsWrapper):
    """MiniGrid's RGB partial view drawn with 28-pixel tiles: 84x84 for a 3x3 view, the input the
    recurrent-PPO baselines on the Memory tasks feed their CNN (MiniGrid's own default is 8-pixel
    tiles, 24x24). Replaces ``image`` in the observation dict, like the wrapper it extends."""

    TILE_SIZE = 28

    def __init__(self, env: gym.Env):
        super().__init__(env, tile_size=self.TILE_SIZE)


class NavigationActions(gym.ActionWrapper):
    """MiniGrid with only its navigation actions: ``Discrete(3)``, 0 turn left, 1 turn right,
    2 forward (MiniGrid's own indices for them, so actions pass through unchanged). Refuses, with a
    ValueError at construction, an env whose action space is not MiniGrid's ``Discrete(7)``."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        actions = getattr(env.unwrapped, "actions", None)
        space = env.action_space
        if (actions is None or not isinstance(space, spaces.Discrete) or space.n != len(actions)
                or (actions.left, actions.right, actions.forward) != (0, 1, 2)):
            raise ValueError(f"NavigationActions needs a MiniGrid env (Discrete(7): left, right, forward, ...), got action space {space}")
        self.action_space = spaces.Discrete(3)

    def action(self, action: Any) -> int:
        return int(action)


def memory_cue_cell(base: gym.Env) -> tuple[int, int]:
    """``(x, y)`` of the cue (the start-room object) in an unwrapped MiniGrid Memory env."""
    return 1, base.height // 2 - 1


def memory_split_view(base: gym.Env) -> str | None:
    """In an unwrapped MiniGrid Memory env: the type of the end object in view (``"key"`` or
    ``"ball"``) when the agent stands at the split (the middle of the end corridor) facing north or
    south, where the next move decides the episode; None anywhere else. The matching choice is
    forward when that object matches the cue, a turn otherwise."""
    x, y = (int(v) for v in base.agent_pos)
    corridor_x = base.success_pos[0]  # both end cells, and both end objects, are in this column
    middle = base.height // 2
    if x != corridor_x or y != middle or base.agent_dir not in (1, 3):  # 1: south, 3: north
        return None
    return base.grid.get(x, middle + 2 if base.agent_dir == 1 else middle - 2).type


class CueInViewAtStart(gym.Wrapper):
    """Diagnostic: MiniGrid's Memory task with the agent always starting in the start room's first
    column, facing east, so the cue (one cell north of it) is in view at the first step whatever
    the view size. Goes first in ``env.wrappers`` (it returns MiniGrid's own observation, so no
    observation wrapper may sit below it); refuses, with a ValueError at construction, an env that
    is not MiniGrid's Memory task or whose observations were already changed."""

    def __init__(self, env: gym.Env):
        from minigrid.envs.memory import MemoryEnv

        base = env.unwrapped
        if not isinstance(base, MemoryEnv) or env.observation_space != base.observation_space:
            raise ValueError(f"CueInViewAtStart must wrap a MiniGrid Memory env before any observation wrapper, got {env}")
        super().__init__(env)

    def reset(self, **kwargs):
        _, info = self.env.reset(**kwargs)
        base = self.env.unwrapped
        x, y = memory_cue_cell(base)
        base.agent_pos = (x, y + 1)  # just south of the cue
        base.agent_dir = 0
        return base.gen_obs(), info


class ReferenceLayoutPool(gym.Wrapper):
    """Diagnostic: every episode replays one of MiniGrid's layouts for seeds 0..98, drawn at random,
    as recurrent-ppo-truncated-bptt's MiniGrid wrapper does (``reset(seed=randint(0, 99))``).

    With 99 layouts, what the agent sees besides the cue (its start cell, the objects' order) also
    predicts the rewarded side for some layouts, so a run can score above chance by remembering
    layouts rather than the cue. Use it to compare with that reference, not as a benchmark. The
    draws come from the wrapper's own generator, seeded by the first seeded reset (or by the OS).
    """

    POOL_SIZE = 99

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._pool_rng = np.random.default_rng()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._pool_rng = np.random.default_rng(seed)
        layout_seed = int(self._pool_rng.integers(self.POOL_SIZE))
        return self.env.reset(seed=layout_seed, options=options)


class FirstVisitBonus(gym.Wrapper):
    """Training-time exploration bonus: ``BONUS`` added to the reward on each step that brings the
    agent onto a cell it has not stood on yet in this episode (the start cell counts as visited).

    Only first visits pay, so an episode's bonus is at most ``BONUS`` times the free cells (up to
    18 in MiniGrid-MemoryS13Random) and cannot be farmed by walking in circles. Sets
    ``info["success"]`` from MiniGrid's own reward at an episode's end (:class:`SuccessInfo` keeps
    it), so success rates stay the task's; episode returns include the bonus. Leave it out when
    evaluating (``eval.env_wrappers``). Refuses, with a ValueError at construction, an env that is not
    a MiniGrid env (it reads the agent's cell).
    """

    BONUS = 0.05

    def __init__(self, env: gym.Env):
        from minigrid.minigrid_env import MiniGridEnv

        if not isinstance(env.unwrapped, MiniGridEnv):
            raise ValueError(f"FirstVisitBonus needs a MiniGrid env (it reads the agent's cell), got {env.unwrapped}")
        super().__init__(env)
        self._visited: set[tuple[int, int]] = set()

    def _cell(self) -> tuple[int, int]:
        x, y = self.env.unwrapped.agent_pos
        return int(x), int(y)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._visited = {self._cell()}
        return obs, info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            info = {**info, "success": minigrid_success(terminated, reward)}
        cell = self._cell()
        if cell not in self._visited:
            self._visited.add(cell)
            reward = float(reward) + self.BONUS
        return obs, reward, terminated, truncated, info
