"""Plot evaluations made with different eval settings side by side, and print their success by
episode of the trial (docs/results.md comparisons such as memory carried vs ``eval.forget_episodes``).

    python experiments/compare_evals.py \\
        --eval "memory carried=runs/nav3d/A/eval/t500-1024/results.json" \\
        --eval "memory cleared each episode=runs/nav3d/A/eval/t500-1024-forget/results.json" \\
        --episodes-only --output docs/images/nav3d_extobjnav_privileged.png

``memo-rl eval`` with several PATHs already plots them together when they share one eval
setting; this script is for folders that do not. Each ``--eval LABEL=FILE[@CHECKPOINT]`` takes
the entry of ``CHECKPOINT`` (a file name such as ``ckpt_000002500608.pt``) or the newest one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from memo_rl.plots import plot_episode_success, plot_eval_bins


def parse_eval(text: str) -> tuple[str, dict]:
    """``LABEL=FILE[@CHECKPOINT]`` -> (label, that checkpoint's entry of the results.json FILE)."""
    label, sep, where = text.partition("=")
    if not sep or not label or not where:
        raise argparse.ArgumentTypeError(f"--eval wants LABEL=FILE[@CHECKPOINT], got {text!r}")
    path, _, checkpoint = where.partition("@")
    try:
        entries = json.loads(Path(path).read_text())["checkpoints"]
    except (OSError, json.JSONDecodeError, KeyError) as err:
        raise argparse.ArgumentTypeError(f"--eval {label}: cannot read an evaluation from {path}: {err}") from None
    if checkpoint:
        entries = [e for e in entries if e["checkpoint"] == checkpoint]
    if not entries:
        raise argparse.ArgumentTypeError(f"--eval {label}: no entry {checkpoint or ''} in {path}")
    return label, max(entries, key=lambda e: e["global_step"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval", dest="evals", action="append", type=parse_eval, required=True,
                        help="LABEL=results.json[@CHECKPOINT], repeatable")
    parser.add_argument("--output", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--title", default=None)
    parser.add_argument("--episodes-only", action="store_true",
                        help="plot only success by episode of the trial (for one-bin evaluations)")
    args = parser.parse_args(argv)
    curves = dict(args.evals)
    for label, entry in curves.items():
        rows = entry.get("episodes_by_index") or []
        success = " ".join(f"{row['success_rate']:.3f}" for row in rows)
        lengths = " ".join(f"{row['episode_length']:.1f}" for row in rows)
        print(f"{label}: {entry['checkpoint']}, trial return {entry['trial_return_mean']:.2f} "
              f"+- {entry['trial_return_ci95']:.2f}\n  success by episode {success}\n  length by episode {lengths}")
    plot = plot_episode_success if args.episodes_only else plot_eval_bins
    print(plot(curves, args.output, title=args.title))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
