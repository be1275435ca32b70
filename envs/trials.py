"""Trials of several episodes for any gymnasium env (``env.episodes_per_trial``).

memo-rl resets an agent's memory only where a trial ends (``info["trial_end"]``; DESIGN.md). Our
batched envs define their own trials; :class:`EpisodesPerTrial` gives any other env trials of a
fixed number of consecutive episodes, so memory carries across the episode ends inside a trial.
With a task that draws a new layout every episode (MiniGrid), nothing useful is carried, but
the recurrent state then starts each episode from where the last one left it rather than from
zeros, as trainers that never reset their hidden state do (recurrent-ppo-truncated-bptt's
``reset_hidden_state: False``). With ``ppo.gae_cut=episode`` returns are still cut at each
episode end.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym


class EpisodesPerTrial(gym.Wrapper):
    """Every ``episodes`` consecutive episodes of the wrapped env form one trial.

    Info: every ``step`` has ``trial_end`` (this step ended the trial's last episode). ``reset()``
    reports ``trial_end`` too (whether the episode that ended just before closed a trial): with
    gymnasium's same-step autoreset the reset's info replaces the ended step's at the top level (the
    step's goes to ``final_info``), so the trainer reads the trial boundary there. The trial's
    episode count restarts at the first reset, after a trial ended, at ``reset(seed=...)``, at
    ``reset(options={"new_trial": True})`` and at a reset in the middle of an episode.
    """

    def __init__(self, env: gym.Env, episodes: int) -> None:
        if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
            raise ValueError(f"episodes per trial must be an integer >= 1, got {episodes!r}")
        super().__init__(env)
        self.episodes = episodes
        self.episodes_done = 0  # episodes finished in the current trial
        self._episode_over = True
        self._trial_over = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        trial_end = self._trial_over
        if (seed is not None or not self._episode_over or self._trial_over
                or bool((options or {}).get("new_trial", False))):
            self.episodes_done = 0
        self._episode_over, self._trial_over = False, False
        return obs, {**info, "trial_end": trial_end}

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._episode_over = bool(terminated or truncated)
        if self._episode_over:
            self.episodes_done += 1
        self._trial_over = self._episode_over and self.episodes_done >= self.episodes
        return obs, reward, terminated, truncated, {**info, "trial_end": self._trial_over}
