"""Does a trained agent's memory hold MiniGrid Memory's cue? A linear probe by step of the episode.

Plays a checkpoint of a run on its MiniGrid Memory env (any size, view size or wrappers the run
used; ``--env-wrappers`` replaces the wrappers, e.g. to leave a training layout pool out) with
sampled actions, records the memory core's output at every step and the episode's cue (key or
ball in the start room), and for a few steps of the episode fits a least-squares linear
probe on half of the episodes and tests it on the other half. It prints, per step, the probe's
accuracy and the distance between the two cues' mean outputs beside the mean output norm: a cue
that is decodable but held faintly shows a small gap (docs/results.md, MiniGrid section).

It also splits the episodes' success by whether the cue was ever in the agent's view during the
episode, by the cue (an agent that half-learned the comparison may get one cue right only), and
by the column the agent started in (in column 1 the cue is in a 3x3 view from the
first step): an agent that uses the cue only when it gets it for free succeeds well above 0.5 in
the episodes that saw it and at 0.5 elsewhere. At the split (the middle of the end corridor,
facing north or south, one end object in view) it prints the policy's mean probability of
stepping forward and of turning, by cue, heading and object in view, beside the matching move
(forward when the object matches the cue): this shows which of the four cue/object cases a
half-learned comparison gets wrong. The memory is carried across episodes the way the run trained
it (``env.episodes_per_trial``).

    python experiments/minigrid_cue_probe.py runs/minigrid/diag-startatcue-gru-recallstd16-s0
    python experiments/minigrid_cue_probe.py runs/minigrid/s9-replica-eps-s2 \
        --env-wrappers envs.minigrid:LargeTileRGBView minigrid.wrappers:ImgObsWrapper envs.minigrid:NavigationActions
"""

from __future__ import annotations

import numpy as np
import torch
from probing import Player, load_agent, probe_parser, run_config

from envs.minigrid import memory_cue_cell, memory_split_view
from memo_rl.registry import make_vector_env


def cue_is_key(env) -> np.ndarray:
    """``[N]`` bool: whether each env's cue (the start-room object) is a key."""
    flags = []
    for single in env.envs:
        base = single.unwrapped
        flags.append(base.grid.get(*memory_cue_cell(base)).type == "key")
    return np.array(flags)


def cue_in_view(env) -> np.ndarray:
    """``[N]`` bool: whether each env's agent has the cue in its view now."""
    return np.array([single.unwrapped.agent_sees(*memory_cue_cell(single.unwrapped)) for single in env.envs])


def start_columns(env) -> np.ndarray:
    """``[N]`` int: each env's agent column (at an episode's start: where it started)."""
    return np.array([int(single.unwrapped.agent_pos[0]) for single in env.envs])


def split_views(env) -> list[str | None]:
    """Per env: the end object in view when the agent is at the split facing it, else None."""
    return [memory_split_view(single.unwrapped) for single in env.envs]


FORWARD, TURNS = 2, (0, 1)  # MiniGrid's action indices (also NavigationActions')


def print_split_decisions(decisions: dict[tuple[bool, int, str], list[np.ndarray]]) -> None:
    """The policy at the split: mean P(forward) and P(turn) per (cue is a key, heading, object in view)."""
    for (key_cue, heading, in_view), probs in sorted(decisions.items()):
        mean = np.mean(probs, axis=0)  # [A]
        cue = "key" if key_cue else "ball"
        match = "forward" if in_view == cue else "turn"
        print(f"  at the split, cue a {cue}, facing {'south' if heading == 1 else 'north'}, a {in_view} in view: "
              f"{len(probs)} steps, forward {mean[FORWARD]:.2f}, turn {mean[list(TURNS)].sum():.2f} "
              f"(the match: {match})")


def print_breakdown(successes: np.ndarray, seen: np.ndarray, columns: np.ndarray, key_cue: np.ndarray) -> None:
    """Success by whether the cue was seen during the episode, by start column and by cue."""
    if len(successes) == 0:
        print("  no episode ended: play more --steps for the split by cue seen and start column")
        return
    for label, rows in (("cue seen", seen), ("cue never seen", ~seen)):
        if rows.any():
            print(f"  {label}: {rows.sum()} episodes ({rows.mean():.2f} of all), success {successes[rows].mean():.2f}")
    for column in np.unique(columns):
        rows = columns == column
        print(f"  start column {column}: {rows.sum()} episodes, cue seen in {seen[rows].mean():.2f}, "
              f"success {successes[rows].mean():.2f}")
    for label, rows in (("key", key_cue), ("ball", ~key_cue)):
        if rows.any():
            print(f"  cue a {label}: {rows.sum()} episodes, cue seen in {seen[rows].mean():.2f}, "
                  f"success {successes[rows].mean():.2f}")


def main() -> None:
    parser = probe_parser(__doc__.splitlines()[0], "run directory of a MiniGrid Memory run", envs=32, steps=1500)
    parser.add_argument("--probe-steps", type=int, nargs="+", default=[0, 2, 5, 8, 11])
    parser.add_argument("--env-wrappers", nargs="+", metavar="WRAPPER",
                        help="play with these env.wrappers instead of the run's (same observation space)")
    args = parser.parse_args()

    cfg = run_config(args.run)
    cfg.env.vectorization = "sync"  # cue_is_key reads each env's grid
    if args.env_wrappers is not None:
        cfg.env.wrappers = list(args.env_wrappers)
    env = make_vector_env(cfg.env, args.envs)
    from minigrid.envs.memory import MemoryEnv

    if not isinstance(env.envs[0].unwrapped, MemoryEnv):
        raise SystemExit(f"{args.run}: env '{cfg.env.id}' is not MiniGrid's Memory task")
    agent, checkpoint = load_agent(cfg, env, args.run, args.checkpoint)
    torch.manual_seed(args.seed)

    N = args.envs
    obs, _ = env.reset(seed=args.seed)
    cue, step_in_episode = cue_is_key(env), np.zeros(N, dtype=int)
    seen, column = cue_in_view(env), start_columns(env)  # the running episodes' cue-seen flag and start column
    seen_by_episode, column_by_episode, cue_by_episode = [], [], []
    player = Player(agent, env, obs)
    outputs, cues, steps, successes = [], [], [], []
    decisions: dict[tuple[bool, int, str], list[np.ndarray]] = {}  # (key cue, heading, in view) -> [A] probs
    with torch.no_grad():
        for _ in range(args.steps):
            _, features, logits = player.outputs()  # [N, d], [N, A]: the policy on these outputs
            outputs.append(features.numpy())
            cues.append(cue.copy())
            steps.append(step_in_episode.copy())
            probs = torch.softmax(logits, dim=-1).numpy()  # [N, A]
            for i, in_view in enumerate(split_views(env)):
                if in_view is not None:
                    decisions.setdefault((bool(cue[i]), int(env.envs[i].unwrapped.agent_dir), in_view), []).append(probs[i])
            actions = torch.distributions.Categorical(logits=logits).sample()  # [N]
            obs, rewards, terminated, truncated, info = env.step(actions.numpy())
            ended = terminated | truncated
            done = np.nonzero(ended)[0]
            successes += [rewards[i] > 0 for i in done]
            seen_by_episode += [seen[i] for i in done]
            column_by_episode += [column[i] for i in done]
            cue_by_episode += [cue[i] for i in done]
            step_in_episode = np.where(ended, 0, step_in_episode + 1)
            # same-step autoreset: where an episode ended the env already shows the next one
            seen = np.where(ended, False, seen) | cue_in_view(env)
            if ended.any():  # read the new episodes' cues and start columns
                cue = np.where(ended, cue_is_key(env), cue)
                column = np.where(ended, start_columns(env), column)
            trial_end = np.asarray(info.get("trial_end", ended), dtype=bool)  # the memory resets only here
            player.advance(obs, actions, rewards, ended, trial_end)
    env.close()
    H = np.concatenate(outputs)  # [steps * N, d]
    C, S = np.concatenate(cues), np.concatenate(steps)  # [steps * N] each
    print(f"{checkpoint}: {len(successes)} episodes, success {np.mean(successes):.2f}")
    print_breakdown(np.array(successes), np.array(seen_by_episode), np.array(column_by_episode),
                    np.array(cue_by_episode, dtype=bool))
    print_split_decisions(decisions)
    for s in args.probe_steps:
        at = S == s
        if at.sum() < 20 or C[at].all() or not C[at].any():
            print(f"  step {s:2d}: too few episodes ({at.sum()})")
            continue
        X = np.c_[H[at], np.ones(at.sum())]  # [n, d + 1]: outputs and a bias
        y = C[at] * 2.0 - 1.0
        half = len(y) // 2
        w = np.linalg.lstsq(X[:half], y[:half], rcond=None)[0]
        accuracy = ((X[half:] @ w > 0) == (y[half:] > 0)).mean()
        gap = np.linalg.norm(H[at][C[at]].mean(0) - H[at][~C[at]].mean(0))
        norm = np.linalg.norm(H[at], axis=1).mean()
        print(f"  step {s:2d}: {at.sum()} episodes, cue decodable {accuracy:.2f}, "
              f"gap between the cues' mean outputs {gap:.2f}, mean output norm {norm:.2f}")


if __name__ == "__main__":
    main()
