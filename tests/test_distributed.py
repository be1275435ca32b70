"""Distributed PPO (memo_rl.distributed): 2 CPU ranks with gloo through torchrun.

The job tests launch real torchrun jobs (tests/distributed_worker.py wraps ``memo-rl train`` and
saves each rank's final weights), so they exercise the launcher, the process group, DDP's gradient
all-reduce, rank-0 logging/checkpointing and the resume path end to end.
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from conftest import TINY

from memo_rl.checkpoint import list_checkpoints, load_checkpoint
from memo_rl.cli import main
from memo_rl.distributed import DistContext, rank_seed
from memo_rl.train import EpisodeTracker, cpu_threads_per_rank

WORKER = Path(__file__).with_name("distributed_worker.py")
# 2 ranks x 4 envs x 16 steps = 128 env steps per update; checkpoints every 2 updates.
JOB = [*TINY, "memory.core=gru", "train.total_steps=640"]


def torchrun(out: Path, tag: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(WORKER), str(out), tag, "train", "dark_key_to_door_gru", *args]
    env = {**os.environ, "PYTHONPATH": str(WORKER.parent.parent)}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def weights(out: Path, tag: str, rank: int) -> dict[str, torch.Tensor]:
    return torch.load(out / f"{tag}-rank{rank}.pt", weights_only=True)


def metric_steps(run_dir: Path) -> list[int]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [int(row["global_step"]) for row in csv.DictReader(f)]


def test_two_gloo_ranks_stay_identical_count_all_steps_and_resume_exactly(tmp_path):
    run_dir = tmp_path / "run"
    job = torchrun(tmp_path, "full", *JOB, f"run.dir={run_dir}")
    assert job.returncode == 0, job.stderr[-3000:]
    assert job.stdout.count("[memo-rl] done: 640 steps") == 1  # rank 0 alone reports

    # DDP keeps every parameter identical on both ranks, bit for bit, after 5 updates.
    rank0, rank1 = weights(tmp_path, "full", 0), weights(tmp_path, "full", 1)
    assert rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)

    # The global step counts both ranks: 5 updates of 2 x 4 envs x 16 steps.
    assert metric_steps(run_dir) == [128, 256, 384, 512, 640]
    steps = [step for step, _ in list_checkpoints(run_dir / "checkpoints")]
    assert steps == [256, 512, 640]
    payload = load_checkpoint(run_dir / "checkpoints" / f"ckpt_{512:012d}.pt")
    assert payload["global_step"] == 512 and payload["update"] == 4 and payload["world_size"] == 2
    # Each rank plays its own envs: rank 1's state is stored beside rank 0's and differs from it.
    other = payload["rank_states"][0]
    assert len(payload["rank_states"]) == 1
    assert any(not torch.equal(payload["env_state"][k], other["env_state"][k]) for k in other["env_state"])

    # Interrupt after the checkpoint at 256 (drop what came later) and resume: the job continues
    # from step 256 and ends with exactly the weights of the uninterrupted job.
    for step in (512, 640):
        (run_dir / "checkpoints" / f"ckpt_{step:012d}.pt").unlink()
    (run_dir / "summary.json").unlink()
    resumed = torchrun(tmp_path, "resumed", *JOB, f"run.dir={run_dir}", "run.resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stderr and "(step 256)" in resumed.stderr
    assert metric_steps(run_dir) == [128, 256, 384, 512, 640]
    again0, again1 = weights(tmp_path, "resumed", 0), weights(tmp_path, "resumed", 1)
    assert all(torch.equal(again0[k], rank0[k]) and torch.equal(again1[k], rank0[k]) for k in rank0)

    # A second job into the same run directory without run.resume: one error line, exit 2, run intact.
    clash = torchrun(tmp_path, "clash", *JOB, f"run.dir={run_dir}")
    assert clash.returncode != 0
    assert clash.stderr.count("memo-rl: error: run directory") == 1
    assert [step for step, _ in list_checkpoints(run_dir / "checkpoints")] == [256, 512, 640]


def test_memo_ranks_stay_identical_when_minibatches_skip_the_summary_queries(tmp_path):
    """Memo with segments longer than the training sequences: a minibatch may reach no segment
    end, and then the summary queries get no gradient (Memo declares ``may_skip_parameters``, so
    DDP looks for unused parameters); the job finishes with equal weights on both ranks."""
    memo = [*TINY, "memory.core=memo", "agent.d_model=16", "memory.n_layers=1", "memory.n_heads=2",
            "memory.segment_length=12", "memory.summary_length=2", "train.total_steps=384"]
    job = torchrun(tmp_path, "memo", *memo, f"run.dir={tmp_path / 'run'}")
    assert job.returncode == 0, job.stderr[-3000:]
    rank0, rank1 = weights(tmp_path, "memo", 0), weights(tmp_path, "memo", 1)
    assert "core.queries" in rank0
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    assert metric_steps(tmp_path / "run") == [128, 256, 384]


def test_distributed_without_torchrun_is_one_line(tmp_path, capsys, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert main(["train", *TINY, "run.distributed=true", f"run.dir={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs the torchrun launcher" in err[0]
    assert not (tmp_path / "r").exists()


def test_rank_seeds_are_distinct_and_rank_zero_keeps_the_seed():
    seeds = [rank_seed(7, rank) for rank in range(64)]
    assert seeds[0] == 7 and len(set(seeds)) == 64
    assert all(abs(s - 7) > 1_000 for s in seeds[1:])  # not neighbours of the seed (per-env streams)
    assert rank_seed(7, 3) == rank_seed(7, 3) != rank_seed(8, 3)


def test_episode_statistics_pool_the_ranks():
    trackers = [EpisodeTracker(2), EpisodeTracker(2)]
    ended = np.array([True, True])
    trackers[0].update(np.array([1.0, 3.0]), ended, ended, np.array([1.0, 0.0]))
    trackers[1].update(np.array([5.0, 7.0]), ended, ended, np.array([1.0, 1.0]))
    merged = EpisodeTracker.merged_summary([t.state_dict() for t in trackers])
    assert merged["episode_return_mean"] == 4.0 and merged["success_rate"] == 0.75
    assert merged["episodes"] == 4 and merged["trial_return_mean"] == 4.0


def test_cpu_ranks_do_not_oversubscribe_the_node(monkeypatch):
    cpu_rank = DistContext(rank=1, world_size=2, device=torch.device("cpu"))
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert cpu_threads_per_rank(1, cpu_rank) == 1
    assert cpu_threads_per_rank(4, cpu_rank) == 2 and cpu_threads_per_rank(0, cpu_rank) == 2
    assert cpu_threads_per_rank(4, DistContext()) == 4  # a single process keeps train.threads


def test_slurm_recipe_starts_a_resumable_job(tmp_path):
    """experiments/slurm/ddppo.sbatch run as Slurm would on one node (srun and scontrol replaced by
    shims that run the command here): torchrun's c10d rendezvous on the head node, 2 CPU ranks."""
    import socket

    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "srun").write_text('#!/bin/sh\nwhile [ "${1#--}" != "$1" ]; do shift; done\nexec "$@"\n')  # drop options
    (shims / "scontrol").write_text("#!/bin/sh\necho localhost\n")
    for shim in shims.iterdir():
        shim.chmod(0o755)
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    run_dir = tmp_path / "run"
    env = {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}", "PYTHONPATH": str(WORKER.parent.parent),
           "SLURM_JOB_ID": "42", "SLURM_NNODES": "1", "SLURM_JOB_NODELIST": "node[1]", "RANKS_PER_NODE": "2",
           "RUN_DIR": str(run_dir), "PYTHON": sys.executable, "MASTER_PORT": str(port)}
    script = WORKER.parent.parent / "experiments" / "slurm" / "ddppo.sbatch"
    args = ["bash", str(script), "dark_key_to_door_gru", *TINY, "train.total_steps=256"]
    job = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert job.returncode == 0, job.stderr[-3000:]
    assert "1 node(s) x 2 rank(s), rendezvous on localhost" in job.stdout
    assert metric_steps(run_dir) == [128, 256]
    assert json.loads((run_dir / "summary.json").read_text())["world_size"] == 2
    # Resubmitted (a requeue): the finished run is left as it is.
    again = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert again.returncode == 0 and "already finished" in again.stdout
    assert metric_steps(run_dir) == [128, 256]
