"""``memo-rl`` command line: train | eval | sweep | report | bench.

Every user error (bad key, value, preset, env id, run directory) is reported as one line on
stderr with exit status 2, before any file of an existing run is touched.
"""

from __future__ import annotations

import argparse
import os
import sys

from memo_rl.config import ConfigError, available_presets


def _split_preset(args: list[str]) -> tuple[str | None, list[str]]:
    """``[PRESET] key=value ...`` -> (preset, overrides)."""
    preset = None
    overrides = []
    for i, arg in enumerate(args):
        if "=" in arg:
            overrides.append(arg)
        elif i == 0:
            preset = arg
        else:
            raise ConfigError(f"unexpected argument '{arg}': only the first argument may be a preset; overrides look like key=value")
    return preset, overrides


def _cmd_train(ns: argparse.Namespace) -> int:
    from memo_rl.train import run_training

    preset, overrides = _split_preset(ns.args)
    run_training(preset, overrides)
    return 0


def _cmd_eval(ns: argparse.Namespace) -> int:
    from memo_rl.evaluate import run_eval

    return 0 if run_eval(ns.args) else 1


def _cmd_sweep(ns: argparse.Namespace) -> int:
    from memo_rl.sweep import run_sweep

    return run_sweep(ns)


def _cmd_report(ns: argparse.Namespace) -> int:
    from memo_rl.report import run_report

    return run_report(ns)


def _cmd_bench(ns: argparse.Namespace) -> int:
    from memo_rl.bench import run_bench

    run_bench(ns)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memo-rl", description="Memory-efficient embodied RL: train, evaluate, benchmark.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train",
        help="train an agent: memo-rl train [PRESET] [section.key=value ...]",
        description="Train with PPO. PRESET names a file under configs/ (e.g. quickstart, dark_key_to_door_gru); "
        "overrides use dotted keys, e.g. ppo.lr=3e-4 memory.core=lstm env.num_envs=32.",
        epilog="presets: " + ", ".join(available_presets()),
    )
    train.add_argument("args", nargs="*", metavar="PRESET|key=value")
    train.set_defaults(func=_cmd_train)
    evaluate = sub.add_parser(
        "eval",
        help="evaluate checkpoints: memo-rl eval PATH [PATH ...] [eval.key=value ...]",
        description="Play checkpoints in (streaming) trials and report metrics per bin of trial steps. PATH is a "
        "checkpoint, a run directory or a folder of checkpoints (evaluated in step order, resumable). Options: "
        "eval.streaming=true eval.window=W (memory bound), eval.trial_steps=N, eval.trials=N, eval.deterministic=true, "
        "eval.follow=true (pick up new checkpoints while training runs), eval.tag=NAME; see EvalConfig in memo_rl/config.py.",
    )
    evaluate.add_argument("args", nargs="+", metavar="PATH|eval.key=value")
    evaluate.set_defaults(func=_cmd_eval)
    from memo_rl.report import add_report_arguments
    from memo_rl.sweep import add_sweep_arguments

    sweep = sub.add_parser(
        "sweep",
        help="run a grid of configs x seeds: memo-rl sweep experiments/NAME.py [--launcher local|slurm]",
        description="Run every cell of a sweep file (experiments/NAME.py defines SWEEP = memo_rl.sweep.Sweep(...)) as "
        "a run directory under runs/sweeps/NAME. Re-running skips finished cells, resumes interrupted ones and retries "
        "failed ones.",
    )
    add_sweep_arguments(sweep)
    sweep.set_defaults(func=_cmd_sweep)
    report = sub.add_parser("report", help="aggregate a sweep: IQM with bootstrap CIs, curves, report.md")
    add_report_arguments(report)
    report.set_defaults(func=_cmd_report)
    bench = sub.add_parser("bench", help="throughput benchmarks (table + JSON)")
    from memo_rl.bench import add_bench_arguments

    add_bench_arguments(bench)
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        return ns.func(ns)
    except ConfigError as err:
        from memo_rl.distributed import is_main_process

        if is_main_process():  # a distributed job reports the error once, not once per rank
            print(f"memo-rl: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("memo-rl: interrupted; the newest checkpoint is intact (resume with run.resume=true)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which has closed: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not raise again
        return 1


if __name__ == "__main__":
    sys.exit(main())
