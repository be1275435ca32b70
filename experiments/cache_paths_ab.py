"""Rollout step speed of a transformer core with and without the in-place cache paths.

Times ``core.step`` for 64 envs from a trial position (after one warm-up step) three ways, each
in a fresh process so that nothing is shared between them:

- ``before``: every step attends to a copy of cache + new token and appends by concatenation;
- ``read``: the one-step query reads the cache in place (``split_attention``), appends still copy;
- ``both``: the shipped code, reading in place and appending into the buffer's spare room;
- ``stepper`` (Memo with ``--window``): :class:`StreamingMemoStepper`, fixed-size buffers written
  in place, no copy of the cache at all (``eval.fixed_buffers=true``).

The older paths are forced on by replacing ``append_along`` with ``torch.cat`` and raising
``SPLIT_READ_MIN_KEYS`` out of reach (docs/benchmarks.md, "Reading and appending in place").

    python experiments/cache_paths_ab.py --core memo --position 16384 --steps 64
    python experiments/cache_paths_ab.py --core fct --position 4096 --steps 16
    python experiments/cache_paths_ab.py --core memo --window 16 --position 16384 --steps 128
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

MODES = ("before", "read", "both")


def time_mode(core_name: str, mode: str, position: int, steps: int, num_envs: int, window: int | None) -> float:
    """Env steps/s of ``core.step`` with the cache paths of ``mode``."""
    import torch

    import memo_rl.memory.transformer as transformer
    from memo_rl.memory.base import build_memory_core

    torch.set_num_threads(1)
    if mode in ("before", "read"):
        transformer.append_along = lambda t, new, dim: torch.cat([t, new], dim=dim)
    if mode == "before":
        transformer.SPLIT_READ_MIN_KEYS = 1 << 62
    options = {"segment_length": 64, "summary_length": 4} if core_name == "memo" else {}
    if window is not None:
        options["window"] = window
    core = build_memory_core(core_name, 128, n_layers=3, n_heads=4, **options).eval()  # the agent presets' sizes
    x = torch.randn(num_envs, 128)
    with torch.no_grad():
        if mode == "stepper":
            from memo_rl.memory import StreamingMemoStepper

            stepper = StreamingMemoStepper(core, num_envs)
            stepper.load(core.synthetic_state(num_envs, position, "cpu"))
            step = lambda: stepper.step(x)  # noqa: E731
        else:
            state = core.synthetic_state(num_envs, position, "cpu")

            def step() -> None:
                nonlocal state
                _, state = core.step(x, state, None)

        step()  # warm-up
        start = time.perf_counter()
        for _ in range(steps):
            step()
        seconds = time.perf_counter() - start
    return num_envs * steps / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--core", choices=("memo", "fct", "rmt"), default="memo")
    parser.add_argument("--position", type=int, default=16384, help="trial step the cache is built for")
    parser.add_argument("--steps", type=int, default=64, help="timed steps (Memo: 64 includes one summary write)")
    parser.add_argument("--envs", type=int, default=64)
    parser.add_argument("--window", type=int, default=None, help="memo: keep the newest W summary blocks (adds the "
                        "stepper mode)")
    parser.add_argument("--mode", choices=(*MODES, "stepper"), help=argparse.SUPPRESS)  # one measurement, in a child
    args = parser.parse_args()
    if args.window is not None and args.core != "memo":
        parser.error(f"--window applies to --core memo, got --core {args.core}")
    if args.mode:
        print(time_mode(args.core, args.mode, args.position, args.steps, args.envs, args.window))
        return
    window = [] if args.window is None else ["--window", str(args.window)]
    for mode in MODES + (("stepper",) if args.window is not None else ()):
        out = subprocess.run(
            [sys.executable, __file__, "--core", args.core, "--position", str(args.position), "--steps",
             str(args.steps), "--envs", str(args.envs), *window, "--mode", mode],
            check=True, capture_output=True, text=True,
        )
        print(f"{args.core} @{args.position} {mode:>7}: {float(out.stdout.strip()):,.0f} env steps/s")


if __name__ == "__main__":
    main()
