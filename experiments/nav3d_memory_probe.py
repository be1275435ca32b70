"""Does a trained Nav3D ExtObjNav agent's memory hold where its goal is? Probes at episode starts.

Plays a checkpoint of a run on its Nav3D env with sampled actions (``--env-kwargs`` overrides the
run's env kwargs, e.g. a shorter ``trial_length`` for more first episodes) and records, at the
first step of every episode, the memory core's output and the goal object's position in the GPS
frame (``goal_position``; with ``gps_frame=trial`` fixed for the whole trial). It fits a
linear (ridge) and a small MLP probe from the output to that position on the episodes of half the
envs and reports their mean error in metres on the other half, beside the error of guessing the
mean position. Rows: episodes whose goal object the agent already stopped at earlier in the trial
(a memory that keeps what it found can hold its position), and first episodes (nothing seen
yet: the control). Above them, the same probes of a position the agent reads at that step, its
own GPS, from the core's output and from the encoders' output (the core's input): whether the
agent keeps track of where it is at all. It also prints success and length by whether the goal
was found before, so that storing (the probe) and using (success, length) can be told apart
(docs/results.md, Nav3D section).

    python experiments/nav3d_memory_probe.py runs/nav3d/obj1-cap50-ft-gru-s0 --envs 64 --steps 1000 --env-kwargs trial_length=250
"""

from __future__ import annotations

import numpy as np
import torch
from probing import Player, load_agent, probe_parser, run_config

from envs.nav3d import Nav3DVectorEnv
from memo_rl.registry import make_vector_env


def probe_error(X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Mean Euclidean error (m) on ``test`` rows of maps ``X [n, d] -> y [n, 2]`` fitted on ``train``
    rows: ``linear`` (ridge regression on standardised inputs, penalty 10: a few hundred rows of a
    64-wide output would overfit plain least squares), ``mlp`` (one hidden layer of 128 tanh units,
    full-batch Adam on standardised inputs, up to 500 steps, stopped where a fifth of the train rows
    held out fit best) and ``mean`` (predicting the ``train`` mean: no information)."""
    mu, sd = X[train].mean(0), X[train].std(0) + 1e-6
    Z = (X - mu) / sd  # [n, d] standardised
    A = np.c_[Z, np.ones(len(X))]  # [n, d + 1]: outputs and a bias
    penalty = 10.0 * np.eye(A.shape[1])
    penalty[-1, -1] = 0.0  # the bias is not shrunk
    w = np.linalg.solve(A[train].T @ A[train] + penalty, A[train].T @ y[train])  # [d + 1, 2]
    errors = {"linear": np.linalg.norm(A[test] @ w - y[test], axis=1).mean(),
              "mean": np.linalg.norm(y[train].mean(0) - y[test], axis=1).mean()}
    torch.manual_seed(seed)
    Xt = torch.as_tensor(Z, dtype=torch.float32)  # [n, d]
    yt = torch.as_tensor(y, dtype=torch.float32)  # [n, 2]
    rows = np.random.default_rng(seed).permutation(np.flatnonzero(train))
    fit_rows, val_rows = torch.as_tensor(rows[len(rows) // 5:]), torch.as_tensor(rows[: len(rows) // 5])
    mlp = torch.nn.Sequential(torch.nn.Linear(X.shape[1], 128), torch.nn.Tanh(), torch.nn.Linear(128, 2))
    optimizer = torch.optim.Adam(mlp.parameters(), lr=3e-3)
    best, best_state = float("inf"), None
    for step in range(500):  # full batch; kept at its best error on the fifth of train rows held out
        with torch.enable_grad():
            loss = (mlp(Xt[fit_rows]) - yt[fit_rows]).pow(2).sum(1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if step % 10 == 9:
            with torch.no_grad():
                val = (mlp(Xt[val_rows]) - yt[val_rows]).norm(dim=1).mean().item()
            if val < best:
                best, best_state = val, {k: v.clone() for k, v in mlp.state_dict().items()}
    mlp.load_state_dict(best_state)
    with torch.no_grad():
        errors["mlp"] = (mlp(Xt[torch.as_tensor(np.flatnonzero(test))]) - yt[np.flatnonzero(test)]).norm(dim=1).mean().item()
    return {name: float(value) for name, value in errors.items()}


def describe(errors: dict[str, float]) -> str:
    return (f"error {errors['linear']:.2f} m linear, {errors['mlp']:.2f} m MLP "
            f"(guessing the mean: {errors['mean']:.2f} m)")


def main() -> None:
    parser = probe_parser(__doc__.splitlines()[0], "run directory of a Nav3D ExtObjNav run", envs=64, steps=2000)
    parser.add_argument("--env-kwargs", nargs="+", default=[], metavar="KEY=INT", help="override env kwargs (ints)")
    args = parser.parse_args()

    cfg = run_config(args.run)
    for item in args.env_kwargs:
        key, sep, value = item.partition("=")
        if not sep or not value.lstrip("-").isdigit():
            raise SystemExit(f"--env-kwargs takes KEY=INT, got {item!r}")
        cfg.env.kwargs[key] = int(value)
    env = make_vector_env(cfg.env, args.envs)
    nav = env.unwrapped
    if not isinstance(nav, Nav3DVectorEnv) or nav.num_goals != 1:
        raise SystemExit(f"{args.run}: env '{cfg.env.id}' is not the Nav3D ExtObjNav task")
    agent, checkpoint = load_agent(cfg, env, args.run, args.checkpoint)
    torch.manual_seed(args.seed)

    N, k = args.envs, nav.num_objects
    obs, _ = env.reset(seed=args.seed)
    found = np.zeros((N, k), bool)  # [N, k]: objects stopped at successfully earlier in the trial
    ep_index = np.zeros(N, int)
    starting = np.ones(N, bool)  # the env shows an episode's first observation
    rows: list[tuple] = []  # per episode start: env, episode index, goal found before, output, goal position, own GPS
    row_of = np.full(N, -1)  # [N]: each env's running episode as its index in rows
    outcome: dict[int, tuple[bool, int]] = {}  # index in rows -> (success, length) of that episode
    length = np.zeros(N, int)
    player = Player(agent, env, obs)
    for _ in range(args.steps):
        goal = nav.get_state()["goal_seq"][:, 0]  # [N] the running episodes' goal objects
        own = player.inputs.obs["gps_compass"][:, :2].numpy()  # [N, 2]: the agent's GPS, an input of this step
        embedded, features, logits = player.outputs()  # [N, e], [N, d], [N, A]
        position = nav.goal_position()  # [N, 2]
        for i in np.flatnonzero(starting):
            row_of[i] = len(rows)
            rows.append((i, ep_index[i], found[i, goal[i]], features[i].numpy(), position[i], own[i], embedded[i].numpy()))
        actions = torch.distributions.Categorical(logits=logits).sample()  # [N]
        obs, rewards, terminated, truncated, info = env.step(actions.numpy())
        ended = terminated | truncated
        trial_end = np.asarray(info["trial_end"], bool)
        length += 1
        for i in np.flatnonzero(ended & ~trial_end):  # episodes the trial's end did not cut
            outcome[row_of[i]] = (bool(info["success"][i]), int(length[i]))
        found[np.flatnonzero(ended & info["success"]), goal[ended & info["success"]]] = True
        ep_index = np.where(ended, ep_index + 1, ep_index)
        ep_index[trial_end], found[trial_end], length[ended] = 0, False, 0
        starting = ended
        player.advance(obs, actions, rewards, ended, trial_end)
    env.close()

    env_id = np.array([r[0] for r in rows])
    index = np.array([r[1] for r in rows])
    known = np.array([r[2] for r in rows], bool)
    X = np.stack([r[3] for r in rows])  # [episodes, d]
    y = np.stack([r[4] for r in rows])  # [episodes, 2]
    own = np.stack([r[5] for r in rows])  # [episodes, 2]
    held_out = env_id >= N // 2  # test on the episodes of the second half of the envs
    print(f"{checkpoint}: {len(rows)} episode starts in {N} envs, {k} object(s) per layout")
    errors = probe_error(X, own, ~held_out, held_out)  # the control: a position the agent reads at this step
    print(f"  the agent's own GPS position (an input of the step): {describe(errors)}")
    E = np.stack([r[6] for r in rows])  # [episodes, e]
    print(f"  the same from the encoders' output (the core's input): {describe(probe_error(E, own, ~held_out, held_out))}")
    groups = (("goal found earlier in the trial", known), ("first episode of the trial", index == 0),
              ("later episode, goal not found before", (index > 0) & ~known))
    for name, group in groups:
        train, test = group & ~held_out, group & held_out
        played = [outcome[r] for r in np.flatnonzero(group) if r in outcome]
        summary = (f"success {np.mean([s for s, _ in played]):.2f}, length {np.mean([n for _, n in played]):.1f} "
                   f"over {len(played)} episodes") if played else "no finished episodes"
        if train.sum() <= X.shape[1] + 1 or test.sum() < 10:
            print(f"  {name}: {summary}; too few episodes to probe ({train.sum()} to fit, {test.sum()} to test)")
            continue
        print(f"  {name}: {summary}; goal position from the memory's output: {describe(probe_error(X, y, train, test))}; "
              f"fitted on {train.sum()}, tested on {test.sum()}")


if __name__ == "__main__":
    main()
