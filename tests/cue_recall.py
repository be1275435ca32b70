"""A minimal memory task for tests and diagnostics: recall a cue shown at the first step of an episode.

Observation ``[cue_0, cue_1, query]``: the one-hot cue at t=0, zeros in between, ``query=1`` on
the last step. Reward 1 if the action on the last step equals the cue, else 0; episodes last
``length`` steps. A memoryless policy scores 0.5 on average, a policy with memory 1.0.
Registered as ``cue_recall:CueRecall-v0`` (``env.id=tests.cue_recall:CueRecall-v0``).

With ``probe=True`` the last step also shows a one-hot probe bit (observation
``[cue_0, cue_1, query, probe_0, probe_1]``) and the rewarded action is ``cue XOR probe``: the
remembered cue matters only in combination with what is seen at the decision, as in MiniGrid's
Memory tasks (whether the object in view matches the cue). Neither the cue nor the probe alone
predicts the reward, so there is no first-order learning signal for remembering the cue
(docs/results.md, MiniGrid section).
"""

import gymnasium as gym
import numpy as np


class CueRecall(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, length: int = 6, probe: bool = False):
        if length < 2:
            raise ValueError(f"bad length {length}: must be >= 2 (cue and question on different steps)")
        self.length, self.probe = length, probe
        self.observation_space = gym.spaces.Box(0.0, 1.0, (5 if probe else 3,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.observation_space.shape, np.float32)
        if self.t == 0:
            obs[self.cue] = 1.0
        if self.t == self.length - 1:
            obs[2] = 1.0
            if self.probe:
                obs[3 + self.probe_bit] = 1.0
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.cue = 0, int(self.np_random.integers(2))
        self.probe_bit = int(self.np_random.integers(2)) if self.probe else 0
        return self._obs(), {}

    def target(self) -> int:
        """The action rewarded on the last step."""
        return self.cue ^ self.probe_bit

    def step(self, action):
        last = self.t == self.length - 1
        reward = float(last and int(action) == self.target())
        self.t += 1
        obs = self._obs() if not last else np.zeros(self.observation_space.shape, np.float32)
        return obs, reward, last, False, {"success": bool(reward)} if last else {}


if "CueRecall-v0" not in gym.registry:
    gym.register("CueRecall-v0", entry_point=CueRecall)
