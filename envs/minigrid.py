"""MiniGrid support: the success flag MiniGrid does not report.

MiniGrid pays a positive reward only when the mission is accomplished (for the Memory tasks:
picking the object that matches the one shown at the start), and ends the episode with zero reward
otherwise (wrong object, or the step limit). :class:`SuccessInfo` turns that into
``info["success"]`` at the end of each episode, so success rates show up in the training progress
line, TensorBoard and ``memo-rl eval`` like they do for our own envs.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

__all__ = ["SuccessInfo"]


class SuccessInfo(gym.Wrapper):
    """Adds ``info["success"]`` (1.0 or 0.0) on the step that ends an episode: success means the
    episode terminated (not truncated) with a positive reward."""

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            info = {**info, "success": float(terminated and reward > 0)}
        return obs, reward, terminated, truncated, info
