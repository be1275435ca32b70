"""A minimal memory task for tests: recall a cue shown at the first step of an episode.

Observation ``[cue_0, cue_1, query]``: the one-hot cue at t=0, zeros in between, ``query=1`` on
the last step. Reward 1 if the action on the last step equals the cue, else 0; episodes last
``length`` steps. A memoryless policy scores 0.5 on average, a policy with memory 1.0.
Registered as ``cue_recall:CueRecall-v0`` (``env.id=tests.cue_recall:CueRecall-v0``).
"""

import gymnasium as gym
import numpy as np


class CueRecall(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, length: int = 6):
        self.length = length
        self.observation_space = gym.spaces.Box(0.0, 1.0, (3,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def _obs(self) -> np.ndarray:
        obs = np.zeros(3, np.float32)
        if self.t == 0:
            obs[self.cue] = 1.0
        if self.t == self.length - 1:
            obs[2] = 1.0
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.cue = 0, int(self.np_random.integers(2))
        return self._obs(), {}

    def step(self, action):
        last = self.t == self.length - 1
        reward = float(last and int(action) == self.cue)
        self.t += 1
        obs = self._obs() if not last else np.zeros(3, np.float32)
        return obs, reward, last, False, {"success": bool(reward)} if last else {}


if "CueRecall-v0" not in gym.registry:
    gym.register("CueRecall-v0", entry_point=CueRecall)
