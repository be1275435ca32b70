"""Env-only throughput of Nav3D (no torch): env steps (= frames) per second at a given resolution.

    NUMBA_NUM_THREADS=1 python -m envs.nav3d.throughput [--task extobjnav|multion] [--envs 1 64 256]

Each size is warmed up (numba compilation and first allocations excluded), then stepped for about
``--seconds`` with uniformly random actions drawn beforehand (stop included, so episodes end often
and final observations are rendered too). Prints one line per size.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from .vector import ExtObjNavVectorEnv, MultiONVectorEnv

TASKS = {"extobjnav": ExtObjNavVectorEnv, "multion": MultiONVectorEnv}


def measure(cls: type, num_envs: int, resolution: int, seconds: float, seed: int = 0) -> tuple[float, float]:
    """(frames per second, fraction of step time spent in rendering the observations)."""
    env = cls(num_envs, resolution=resolution)
    env.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(0, 4, (256, num_envs))  # [T, N]
    for a in actions[:20]:  # warm-up
        env.step(a)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(actions[steps % len(actions)])
        steps += 1
    step_time = (time.perf_counter() - start) / steps
    t0 = time.perf_counter()
    for _ in range(steps):
        env.observe()
    render_time = (time.perf_counter() - t0) / steps
    return num_envs / step_time, render_time / step_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="extobjnav")
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 64, 256])
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    for n in args.envs:
        fps, share = measure(TASKS[args.task], n, args.resolution, args.seconds)
        print(
            f"{args.task} {args.resolution}x{args.resolution} RGB-D num_envs={n:4d}: {fps:10,.0f} frames/s "
            f"(observation rendering {share:.0%} of a step)"
        )


if __name__ == "__main__":
    main()
