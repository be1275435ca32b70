import pytest
import torch

torch.set_num_threads(1)

# A tiny but complete training config: trials of 40 steps (memory resets inside rollouts),
# sequences of 8 steps, 6 updates, a checkpoint every 2 updates.
TINY = [
    "env.num_envs=4",
    "env.kwargs.trial_length=40",
    "env.kwargs.episode_length=10",
    "agent.hidden_size=16",
    "agent.d_model=16",
    "ppo.rollout_length=16",
    "ppo.sequence_length=8",
    "ppo.num_minibatches=2",
    "ppo.epochs=2",
    "train.total_steps=384",
    "run.checkpoint_interval=2",
    "run.progress=false",
]


@pytest.fixture
def tiny():
    return list(TINY)
