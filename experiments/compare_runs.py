"""Plot finished runs side by side and print their final figures (docs/results.md comparisons
that need no extra evaluation: single process vs distributed, MiniGrid gru vs none).

    python experiments/compare_runs.py --run "1 process, 64 envs=runs/ddp/single-64" \\
        --run "2 ranks x 32 envs=runs/ddp/ranks2-32" --columns trial_return_mean episode_return_mean \\
        --output docs/images/dktd_single_vs_2ranks.png

Each ``--run LABEL=DIR[,DIR...]`` is one curve (several directories: seeds, mean with a min-max
band). The table gives, per label and column, the mean of the last ``--last`` logged rows
(averaged over the label's directories) and the env steps the runs reached.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from memo_rl.plots import final_value, plot_learning_curves


def parse_run(text: str) -> tuple[str, list[Path]]:
    label, sep, dirs = text.partition("=")
    if not sep or not label or not dirs:
        raise argparse.ArgumentTypeError(f"--run wants LABEL=DIR[,DIR...], got {text!r}")
    paths = [Path(d) for d in dirs.split(",")]
    missing = [str(p) for p in paths if not (p / "metrics.csv").exists()]
    if missing:
        raise argparse.ArgumentTypeError(f"no metrics.csv in {', '.join(missing)}")
    return label, paths


def last_step(run_dir: Path) -> int:
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return int(rows[-1]["global_step"]) if rows else 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=parse_run, action="append", required=True, metavar="LABEL=DIR[,DIR...]")
    parser.add_argument("--columns", nargs="+", default=["trial_return_mean", "episode_return_mean"])
    parser.add_argument("--output", type=Path, required=True, help="PNG to write")
    parser.add_argument("--title", default=None)
    parser.add_argument("--last", type=int, default=10, help="rows averaged for the final figures (default 10)")
    parser.add_argument("--smooth", type=int, default=10, help="moving-average window of the curves (rows)")
    args = parser.parse_args(argv)
    runs = dict(args.run)
    plot_learning_curves(runs, args.columns, args.output, smooth_window=args.smooth, title=args.title)
    print(f"| run | env steps | {' | '.join(args.columns)} |")
    print(f"|---|---|{'---|' * len(args.columns)}")
    for label, dirs in runs.items():
        finals = [np.mean([final_value(d, c, args.last) for d in dirs]) for c in args.columns]
        steps = min(last_step(d) for d in dirs)
        print(f"| {label} | {steps:,} | {' | '.join(f'{v:.3g}' for v in finals)} |")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
