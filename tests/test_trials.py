"""Trials of several episodes for gymnasium envs (envs/trials.py, ``env.episodes_per_trial``)."""

import gymnasium as gym
import numpy as np
import pytest

from envs.trials import EpisodesPerTrial
from memo_rl import registry
from memo_rl.config import ConfigError, build_config
from memo_rl.train import Trainer


class ThreeStepEpisodes(gym.Env):
    """Every episode ends (terminated) after 3 steps; observes the step count."""

    observation_space = gym.spaces.Discrete(4)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return 0, {}

    def step(self, action):
        self.t += 1
        return self.t, 1.0, self.t == 3, False, {}


def _play_episode(env):
    infos = [env.step(0)[4] for _ in range(3)]
    assert [i["trial_end"] for i in infos[:2]] == [False, False]
    return infos[2]["trial_end"]


def test_every_second_episode_ends_the_trial_and_the_reset_reports_it():
    env = EpisodesPerTrial(ThreeStepEpisodes(), episodes=2)
    assert env.reset(seed=0)[1] == {"trial_end": False}
    assert _play_episode(env) is False
    assert env.reset()[1]["trial_end"] is False  # the next episode of the same trial
    assert _play_episode(env) is True
    assert env.reset()[1]["trial_end"] is True  # the ended step closed a trial: this reset opens one
    assert _play_episode(env) is False and env.episodes_done == 1


@pytest.mark.parametrize("restart", [{"seed": 3}, {"options": {"new_trial": True}}, "mid-episode"])
def test_a_seeded_reset_new_trial_option_or_reset_mid_episode_starts_a_new_trial(restart):
    env = EpisodesPerTrial(ThreeStepEpisodes(), episodes=2)
    env.reset(seed=0)
    _play_episode(env)  # one of the trial's two episodes done
    if restart == "mid-episode":
        env.reset()
        env.step(0)
        env.reset()
    else:
        env.reset(**restart)
    assert env.episodes_done == 0
    assert _play_episode(env) is False  # a fresh trial needs two more episodes


@pytest.mark.parametrize("episodes", [0, -1, 1.5, True])
def test_bad_episode_counts_are_refused(episodes):
    with pytest.raises(ValueError, match="episodes per trial must be an integer >= 1"):
        EpisodesPerTrial(ThreeStepEpisodes(), episodes=episodes)


MINIGRID = ["env.id=MiniGrid-MemoryS7-v0", "env.vectorization=sync", "env.num_envs=3", "env.kwargs.max_episode_steps=4",
            "env.episodes_per_trial=3", "memory.core=gru", "ppo.rollout_length=40", "ppo.num_minibatches=1",
            "ppo.gae_cut=episode", "env.wrappers=[envs.minigrid:SymbolicOneHot]"]


def test_memory_resets_only_at_trial_ends_not_at_the_episode_ends_inside(tmp_path):
    pytest.importorskip("minigrid")
    cfg = build_config(None, MINIGRID)
    trainer = Trainer(cfg, tmp_path)
    trainer.collect()
    ended = trainer.storage.dones.numpy()  # [T, N]; gae_cut=episode: every episode end
    resets = trainer.storage.resets.numpy()  # [T, N]
    assert resets[0].all()
    for n in range(3):
        ends = np.flatnonzero(ended[:, n])
        assert len(ends) >= 9  # episodes of at most 4 steps in 40
        trial_ends = ends[2::3]  # every third episode end closes a trial
        assert np.flatnonzero(resets[1:, n]).tolist() == [t for t in trial_ends.tolist() if t < 39]


def test_episodes_per_trial_errors_are_one_line():
    with pytest.raises(ConfigError, match="'env.episodes_per_trial': must be >= 1"):
        build_config(None, ["env.episodes_per_trial=0"])
    cfg = build_config(None, ["env.episodes_per_trial=2"])  # the default env is batched natively
    with pytest.raises(ConfigError, match="sets its trials with its own env.kwargs"):
        registry.make_vector_env(cfg.env)
