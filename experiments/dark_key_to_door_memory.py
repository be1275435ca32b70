"""Reproduce docs/results.md "Dark Key-to-Door: GRU vs memoryless".

Trains the ``gru`` and ``none`` agents with the same budget and seeds, then plots the curves and
prints the final figures:

    python experiments/dark_key_to_door_memory.py --seeds 0          # trains (about 40 min on 2 cores)
    python experiments/dark_key_to_door_memory.py --seeds 0 --plot-only
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from memo_rl.plots import final_value, plot_learning_curves

CORES = ("gru", "none")
COLUMNS = ("trial_return_mean", "episode_return_mean", "first_episode_length_mean", "later_episode_length_mean")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--root", type=Path, default=Path("runs/dktd"))
    parser.add_argument("--plot-only", action="store_true")
    parser.add_argument("--output", type=Path, default=Path("docs/images/dktd_gru_vs_none.png"))
    args = parser.parse_args()
    if not args.plot_only:
        for core in CORES:
            for seed in args.seeds:
                run_dir = args.root / f"{core}-s{seed}"
                cmd = [sys.executable, "-m", "memo_rl", "train", f"dark_key_to_door_{core}", f"train.seed={seed}",
                       f"run.dir={run_dir}", "run.resume=true"]
                print("$", " ".join(cmd), flush=True)
                subprocess.run(cmd, check=True)
    runs = {core: [args.root / f"{core}-s{seed}" for seed in args.seeds] for core in CORES}
    plot_learning_curves(runs, list(COLUMNS[:2]) + ["later_episode_length_mean"], args.output,
                         title="Dark Key-to-Door, 500-step trials")
    print(f"wrote {args.output}")
    print("| core | seed | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for core, dirs in runs.items():
        for seed, d in zip(args.seeds, dirs):
            print(f"| {core} | {seed} | " + " | ".join(f"{final_value(d, c):.2f}" for c in COLUMNS) + " |")


if __name__ == "__main__":
    main()
