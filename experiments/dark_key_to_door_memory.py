"""Reproduce docs/results.md "Dark Key-to-Door" comparisons of memory cores.

Trains the chosen agents (``--cores``, default ``gru none``; presets ``dark_key_to_door_<core>``)
with the same budget and seeds, plots the curves, then plays fresh trials with each final
checkpoint and reports the mean trial return, the mean episode length by its index in the trial
(shorter later episodes = the agent remembers) and the tokens the memory holds at trial end:

    python experiments/dark_key_to_door_memory.py --seeds 0          # trains (about an hour on 2 cores)
    python experiments/dark_key_to_door_memory.py --seeds 0 --plot-only
    # 512 trials per checkpoint, also at 40M and 60M steps (the newest checkpoint at or before each):
    python experiments/dark_key_to_door_memory.py --seeds 0 --plot-only --trials 512 --at-steps 40000000 60000000
    # the variant with rollouts spanning whole trials, 30M steps:
    python experiments/dark_key_to_door_memory.py --seeds 0 --tag r500 \
        --override ppo.rollout_length=500 train.total_steps=30000000
    # Memo against the full-context transformer and the memoryless agent, 3 seeds:
    python experiments/dark_key_to_door_memory.py --cores memo fct none --seeds 0 1 2 --root runs/dktd3
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from memo_rl import registry
from memo_rl.checkpoint import checkpoint_dir, list_checkpoints, load_checkpoint
from memo_rl.config import config_from_dict
from memo_rl.plots import final_value, plot_learning_curves
from memo_rl.ppo import categorical
from memo_rl.types import first_inputs, next_inputs

CORES = ("gru", "none")
COLUMNS = ("trial_return_mean", "episode_return_mean", "first_episode_length_mean", "later_episode_length_mean")


@torch.no_grad()
def play_trials(
    checkpoint: Path, num_envs: int = 64, seed: int = 12345
) -> tuple[np.ndarray, dict[int, list[int]], int]:
    """One full trial in each of ``num_envs`` fresh envs with the checkpoint's (sampling) policy.

    Returns the trial returns ``[num_envs]``, per episode index in the trial the lengths of the
    episodes that ended before the trial did, and the tokens the memory holds at the trial's end.
    """
    payload = load_checkpoint(checkpoint)
    cfg = config_from_dict(payload["config"])
    env = registry.make_vector_env(cfg.env, num_envs=num_envs)
    agent = registry.make_agent(cfg, env.single_observation_space, env.single_action_space)
    agent.load_state_dict(payload["model"])
    agent.eval()
    generator = torch.Generator().manual_seed(seed)
    to_tensor = lambda o: registry.obs_to_tensor(o, env.single_observation_space, "cpu")  # noqa: E731
    obs, _ = env.reset(seed=seed)
    N = num_envs
    inputs = first_inputs(to_tensor(obs), N, "cpu")
    state, resets = agent.initial_state(N, "cpu"), torch.ones(N, dtype=torch.bool)
    trial_return, ep_index, ep_length = np.zeros(N), np.zeros(N, int), np.zeros(N, int)
    lengths: dict[int, list[int]] = defaultdict(list)
    for _ in range(cfg.env.kwargs["trial_length"]):
        out = agent.step(inputs, state, resets)
        actions, _ = categorical.sample(out.logits, generator)
        obs, rewards, terminated, truncated, info = env.step(actions.numpy())
        ended, trial_end = terminated | truncated, info["trial_end"]
        trial_return += rewards
        ep_length += 1
        for i in np.flatnonzero(ended & ~trial_end):
            lengths[int(ep_index[i])].append(int(ep_length[i]))
        ep_index[ended] += 1
        ep_length[ended] = 0
        inputs = next_inputs(to_tensor(obs), actions, torch.as_tensor(rewards), torch.as_tensor(ended),
                             torch.as_tensor(trial_end))
        state, resets = out.state, torch.zeros(N, dtype=torch.bool)
    env.close()
    return trial_return, lengths, agent.core.cached_tokens(state)


def pick_checkpoints(found: list[tuple[int, Path]], at_steps: list[int] | None) -> list[tuple[int, Path]]:
    """The newest checkpoint at or before each of ``at_steps`` (each once, in step order), then the
    final one; only the final one when ``at_steps`` is None. ``found`` is ``list_checkpoints``'s
    ``(step, path)`` list, oldest first and not empty."""
    picked = {found[-1][0]: found[-1][1]}
    for target in at_steps or []:
        earlier = [(step, path) for step, path in found if step <= target]
        if earlier:
            picked[earlier[-1][0]] = earlier[-1][1]
    return sorted(picked.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", nargs="+", default=list(CORES), help="memory cores (presets dark_key_to_door_<core>)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--root", type=Path, default=Path("runs/dktd"))
    parser.add_argument("--plot-only", action="store_true")
    parser.add_argument("--tag", default="", help="variant name in the run directories, e.g. r500")
    parser.add_argument("--override", nargs="*", default=[], help="config overrides applied to both agents")
    parser.add_argument("--output", type=Path, default=None, help="PNG (default docs/images/dktd_<cores>[-TAG].png)")
    parser.add_argument("--trials", type=int, default=64, help="fresh trials played per checkpoint (default 64)")
    parser.add_argument("--at-steps", type=int, nargs="+", default=None,
                        help="also play the newest checkpoint at or before each of these env steps (default: final only)")
    args = parser.parse_args()
    suffix = f"-{args.tag}" if args.tag else ""
    output = args.output or Path(f"docs/images/dktd_{'_vs_'.join(args.cores)}{suffix}.png")
    torch.set_num_threads(1)
    if not args.plot_only:
        for core in args.cores:
            for seed in args.seeds:
                run_dir = args.root / f"{core}{suffix}-s{seed}"
                cmd = [sys.executable, "-m", "memo_rl", "train", f"dark_key_to_door_{core}", *args.override,
                       f"train.seed={seed}", f"run.dir={run_dir}", "run.resume=true"]
                print("$", " ".join(cmd), flush=True)
                subprocess.run(cmd, check=True)
    runs = {core: [args.root / f"{core}{suffix}-s{seed}" for seed in args.seeds] for core in args.cores}
    plot_learning_curves(runs, ["trial_return_mean", "first_episode_length_mean", "later_episode_length_mean"],
                         output, title=f"Dark Key-to-Door, 500-step trials {' '.join(args.override)}")
    print(f"wrote {output}\n")
    print("Training curves (mean of the last 10 logged values):\n")
    print("| core | seed | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for core, dirs in runs.items():
        for seed, d in zip(args.seeds, dirs):
            print(f"| {core} | {seed} | " + " | ".join(f"{final_value(d, c):.2f}" for c in COLUMNS) + " |")
    print(f"\nCheckpoints, {args.trials} fresh trials each (sampled actions):\n")
    print("| core | seed | step | trial return (mean +- s.e.) | episode 1 | episode 2 | episode 3 | episodes 4-8 "
          "| tokens held at trial end |")
    print("|---|---|---|---|---|---|---|---|---|")
    for core, dirs in runs.items():
        for seed, d in zip(args.seeds, dirs):
            found = list_checkpoints(checkpoint_dir(d))
            if not found:
                raise SystemExit(f"no checkpoints in {checkpoint_dir(d)}")
            for step, path in pick_checkpoints(found, args.at_steps):
                returns, lengths, tokens = play_trials(path, num_envs=args.trials)
                sem = returns.std(ddof=1) / np.sqrt(len(returns))
                cell = lambda ks, lengths=lengths: f"{np.mean([x for k in ks for x in lengths[k]]):.1f}"  # noqa: E731
                print(f"| {core} | {seed} | {step:,} | {returns.mean():.2f} +- {sem:.2f} | {cell([0])} | {cell([1])} "
                      f"| {cell([2])} | {cell(range(3, 8))} | {tokens} |", flush=True)


if __name__ == "__main__":
    main()
