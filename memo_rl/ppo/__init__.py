"""PPO: rollout storage, GAE, losses, learning-rate schedule and the sequence-replaying update."""

from memo_rl.ppo import categorical
from memo_rl.ppo.gae import compute_gae
from memo_rl.ppo.losses import clipped_policy_loss, normalize_advantages, value_loss
from memo_rl.ppo.refresh import TrialHistory
from memo_rl.ppo.schedule import learning_rate
from memo_rl.ppo.storage import RolloutStorage, SequenceBatch
from memo_rl.ppo.update import UpdateStats, ppo_update

__all__ = [
    "RolloutStorage", "SequenceBatch", "TrialHistory", "categorical", "UpdateStats", "clipped_policy_loss", "compute_gae", "learning_rate",
    "normalize_advantages", "ppo_update", "value_loss",
]
