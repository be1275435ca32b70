"""memo-rl: memory policies trained with PPO on vectorized embodied environments."""

__version__ = "0.1.0"
