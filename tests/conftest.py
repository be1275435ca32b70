import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from memo_rl.logging import TIMING_COLUMNS

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


def read_metrics(run_dir: Path, drop_timing: bool = True) -> list[dict]:
    """The rows of a run's metrics.csv, without the timing columns (which differ between equal runs)."""
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if drop_timing:
        rows = [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]
    return rows


REPO = Path(__file__).resolve().parent.parent


def run_experiment(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``experiments/<script>`` as a user would, importing this checkout's packages (not an
    installed copy); stdout and stderr captured as text."""
    return subprocess.run([sys.executable, str(REPO / "experiments" / script), *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)})
