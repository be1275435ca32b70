"""Profile one PPO iteration of a preset (rollout, update, memory rebuild) with ``torch.profiler``.

Where ``memo-rl bench --gpu`` says *how much* time each phase takes, this says *which operators*
take it. Prints, per phase, the wall time (device synchronised) and the operators with the most
self time on the CPU and on the GPU.

    python experiments/profile_update.py dark_key_to_door_memo --envs 4096 --device cuda
    python experiments/profile_update.py dark_key_to_door_memo --envs 16 --device cpu --position 1024  # smoke
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from memo_rl.config import ConfigError, build_config
from memo_rl.train import Trainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def phase(name: str, device: torch.device, rows: int, activities):
    """Profile the block; print its synchronised wall time and its top operators."""
    _sync(device)
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        yield
        _sync(device)
    seconds = time.perf_counter() - start
    print(f"\n=== {name}: {seconds:.3f} s (profiled) ===")
    averages = prof.key_averages()
    print(averages.table(sort_by="self_cpu_time_total", row_limit=rows))
    if device.type == "cuda":
        print(averages.table(sort_by="self_cuda_time_total", row_limit=rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset")
    parser.add_argument("--envs", type=int, default=4096)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--rows", type=int, default=18, help="operators listed per table")
    parser.add_argument("--position", type=int, default=16_384,
                        help="also profile 64 core.step calls at this trial position (0: skip)")
    parser.add_argument("overrides", nargs="*", help="config overrides (key=value)")
    args = parser.parse_intermixed_args()  # overrides may follow the options
    device = torch.device(args.device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with tempfile.TemporaryDirectory(prefix="memo-rl-profile-") as run_dir:
        try:
            cfg = build_config(args.preset, [
                f"env.num_envs={args.envs}", f"train.device={device}", "train.amp=auto", "train.threads=1",
                f"run.dir={run_dir}", "run.progress=false", *args.overrides,
            ])
        except ConfigError as err:
            parser.error(str(err))
        trainer = Trainer(cfg, Path(run_dir))
        for _ in range(2):  # warm-up: numba, kernels, caches of the first trials
            trainer.collect()
            trainer.update_policy()
            trainer.refresh_memory()
        print(f"{args.preset}: {args.envs} envs on {device}, amp {trainer.amp_dtype}, batch {cfg.batch_size:,} steps")
        with phase("rollout", device, args.rows, activities):
            trainer.collect()
        with phase("update (GAE + PPO epochs)", device, args.rows, activities):
            trainer.update_policy()
        with phase("memory rebuild", device, args.rows, activities):
            trainer.refresh_memory()
        if args.position > 0:
            core = trainer.agent.core.eval()
            x = torch.randn(args.envs, core.d_model, device=device)
            state = core.synthetic_state(args.envs, args.position, device)
            with torch.no_grad(), trainer._autocast():
                for _ in range(8):
                    core.step(x, state, None)
                with phase(f"core.step x64 at trial position {args.position}", device, args.rows, activities):
                    for _ in range(64):
                        _, state = core.step(x, state, None)
        trainer.env.close()


if __name__ == "__main__":
    main()
