"""A tiny sweep (2 cores x 2 seeds, a few hundred steps each) used by the tests and as a template.

    memo-rl sweep experiments/smoke.py --max-parallel 2
    memo-rl report runs/sweeps/smoke
"""

from memo_rl.sweep import Sweep

SWEEP = Sweep(
    preset="quickstart",
    grid={"memory.core": ["gru", "none"]},
    seeds=[0, 1],
    overrides=[
        "train.total_steps=512", "env.num_envs=4", "env.kwargs.trial_length=40", "env.kwargs.episode_length=10",
        "ppo.rollout_length=16", "ppo.num_minibatches=2", "ppo.epochs=1", "agent.hidden_size=16", "agent.d_model=16",
        "run.checkpoint_interval=4", "run.progress=false",
    ],
)
