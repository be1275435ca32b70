"""One rank of a test job under torchrun: ``memo-rl train ARGS``, then this rank's final weights
saved to ``OUT/<TAG>-rank<R>.pt`` so the test can compare the ranks' parameters.

Usage: torchrun --standalone --nproc_per_node=K tests/distributed_worker.py OUT TAG train ARGS...
"""

import os
import sys

import torch

from memo_rl import train
from memo_rl.cli import main

out, tag, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
train_and_return = train.Trainer.train


def train_and_save_weights(self):
    summary = train_and_return(self)
    weights = {name: p.detach().cpu().clone() for name, p in self.agent.state_dict().items()}
    torch.save(weights, os.path.join(out, f"{tag}-rank{self.dist.rank}.pt"))
    return summary


train.Trainer.train = train_and_save_weights
sys.exit(main(argv))
