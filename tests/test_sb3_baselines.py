"""Stable-Baselines3 baselines (algo=sb3_ppo / sb3_recurrent_ppo): run-directory contract, the trial
adapter, resume, determinism, observation flattening and one-line errors."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import read_metrics

from memo_rl import registry
from memo_rl.checkpoint import list_checkpoints
from memo_rl.cli import main
from memo_rl.config import EnvConfig
from memo_rl.logging import METRIC_TAGS
from memo_rl.ppo import learning_rate
from memo_rl.sb3_baselines import TrialVecEnv, flat_observation_space, flatten_observations

REPO = Path(__file__).resolve().parent.parent
SMALL_NETS = ["sb3.net_arch=[16]", "sb3.lstm_hidden_size=16"]
TRAINER_SUMMARY_KEYS = {"env_id", "memory_core", "seed", "env_steps", "updates", "wall_seconds", "final",
                        "last_checkpoint"}


@pytest.mark.parametrize("algo", ["sb3_ppo", "sb3_recurrent_ppo"])
def test_sb3_run_writes_the_run_directory_contract(tmp_path, tiny, capsys, algo):
    run_dir = tmp_path / "run"
    assert main(["train", "quickstart", *tiny, f"algo={algo}", *SMALL_NETS, f"run.dir={run_dir}"]) == 0
    err = capsys.readouterr().err
    assert f"algo={algo} ignores" in err and "memory.n_layers" in err  # the gru preset's core options: warned
    config = (run_dir / "config.yaml").read_text()
    assert config.startswith("preset: quickstart") and f"algo: {algo}" in config

    with open(run_dir / "metrics.csv", newline="") as f:
        assert next(csv.reader(f)) == list(METRIC_TAGS)
    rows = read_metrics(run_dir, drop_timing=False)
    assert [int(r["global_step"]) for r in rows] == [64 * i for i in range(1, 7)]
    assert [int(r["update"]) for r in rows] == list(range(1, 7))
    assert all(r["policy_loss"] and r["value_loss"] and r["fps"] and r["episode_return_mean"] for r in rows)
    assert all(r["grad_norm"] == "" and r["cached_tokens"] == "" for r in rows)  # nothing from SB3: left empty
    assert int(rows[-1]["episodes"]) > 0 and rows[-1]["trial_return_mean"] != ""
    # quickstart's linear schedule (lr 5e-4): each update uses the rate at the step its rollout began
    expected_lr = [learning_rate(64 * i, 384, 5e-4, "linear") for i in range(6)]
    assert [float(r["lr"]) for r in rows] == pytest.approx(expected_lr, rel=1e-5)

    assert [step for step, _ in list_checkpoints(run_dir / "checkpoints")] == [128, 256, 384]
    ckpt = torch.load(run_dir / "checkpoints" / "ckpt_000000000384.pt", weights_only=True)
    assert ckpt["algo"] == algo and ckpt["global_step"] == 384 and ckpt["config"]["algo"] == algo
    assert {"format", "config", "model", "optimizer", "rng", "env_state", "carry", "tracker"} <= set(ckpt)
    assert any(k.startswith("lstm_actor") for k in ckpt["model"]) == (algo == "sb3_recurrent_ppo")

    summary = json.loads((run_dir / "summary.json").read_text())
    assert TRAINER_SUMMARY_KEYS <= set(summary) and summary["algo"] == algo
    assert summary["env_steps"] == 384 and summary["updates"] == 6
    assert summary["last_checkpoint"].endswith("ckpt_000000000384.pt")

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir)).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"rollout/episode_return_mean", "rollout/episode_length_mean", "rollout/success_rate",
            "rollout/trial_return_mean", "perf/fps", "loss/policy", "train/lr"} <= tags
    assert "loss/grad_norm" not in tags
    assert [e.step for e in events.Scalars("loss/value")] == [64 * i for i in range(1, 7)]


def _key_door(cut: str, seed: int = 3):
    """An adapter and a reference env with the same seed: 4 envs on a 3x3 grid (key and door are
    found often), episodes of at most 10 steps inside trials of 40."""
    env_cfg = EnvConfig(num_envs=4, kwargs={"size": 3, "episode_length": 10, "trial_length": 40})
    venv = TrialVecEnv(registry.make_vector_env(env_cfg), cut=cut)
    venv.seed(seed)
    reference = registry.make_vector_env(env_cfg)
    ref_obs, _ = reference.reset(seed=seed)
    return venv, reference, ref_obs


@pytest.mark.parametrize("cut", ["trial", "episode"])
def test_adapter_reports_done_at_trial_ends_with_terminal_observation(cut):
    venv, reference, ref_obs = _key_door(cut)
    np.testing.assert_array_equal(venv.reset(), ref_obs)
    rng = np.random.default_rng(0)
    ended_inside_trial = 0
    for t in range(100):
        actions = rng.integers(0, 4, size=4)
        obs, rewards, dones, infos = venv.step(actions)
        ref_obs, ref_rewards, terminated, truncated, info = reference.step(actions)
        ended, trial_end = terminated | truncated, info["trial_end"]
        np.testing.assert_array_equal(trial_end, np.full(4, (t + 1) % 40 == 0))
        np.testing.assert_array_equal(dones, trial_end if cut == "trial" else ended)
        np.testing.assert_array_equal(obs, ref_obs)
        np.testing.assert_array_equal(rewards, ref_rewards)
        ended_inside_trial += int((ended & ~trial_end).sum())
        for i in range(4):
            assert ("terminal_observation" in infos[i]) == dones[i]
            if dones[i]:
                np.testing.assert_array_equal(infos[i]["terminal_observation"], info["final_obs"][i])
                assert infos[i]["TimeLimit.truncated"] == bool(truncated[i] and not terminated[i])
    assert ended_inside_trial > 8  # episodes end inside trials; with cut=trial these were no dones
    venv.close()
    reference.close()


def test_adapter_tracks_trial_and_episode_returns():
    venv, reference, _ = _key_door("trial", seed=5)
    venv.reset()
    rng = np.random.default_rng(1)
    trial_sums = np.zeros(4)
    ends = 0
    for t in range(80):  # two whole trials
        actions = rng.integers(0, 4, size=4)
        _, rewards, dones, _ = venv.step(actions)
        _, _, terminated, truncated, _ = reference.step(actions)
        trial_sums = trial_sums * (t != 40) + rewards  # restart the sums where the second trial began
        ends += int((terminated | truncated).sum())
    tracker = venv.tracker
    assert trial_sums.sum() > 0
    np.testing.assert_allclose(list(tracker.windows["trial_returns"]), trial_sums)  # trial 2 of envs 0..3
    assert tracker.episodes == ends
    venv.close()
    reference.close()


@pytest.mark.parametrize("algo", ["sb3_ppo", "sb3_recurrent_ppo"])
def test_resume_continues_from_newest_checkpoint(tmp_path, tiny, capsys, algo):
    """A run stopped at step 192 and resumed continues there: no duplicate rows, the checkpoints go
    on, and (with SB3 2.9 on CPU, though SB3 does not promise it) the rows equal an uninterrupted run's."""
    common = [*tiny, f"algo={algo}", *SMALL_NETS, "ppo.lr_schedule=constant"]
    assert main(["train", *common, "train.total_steps=384", f"run.dir={tmp_path / 'straight'}"]) == 0
    split = tmp_path / "split"
    assert main(["train", *common, "train.total_steps=192", f"run.dir={split}"]) == 0
    capsys.readouterr()
    assert main(["train", *common, "train.total_steps=384", f"run.dir={split}", "run.resume=true"]) == 0
    assert "from ckpt_000000000192.pt (step 192)" in capsys.readouterr().err
    rows = read_metrics(split)
    assert [int(r["global_step"]) for r in rows] == [64 * i for i in range(1, 7)]
    assert [int(r["update"]) for r in rows] == list(range(1, 7))
    assert [step for step, _ in list_checkpoints(split / "checkpoints")] == [128, 192, 256, 384]
    assert json.loads((split / "summary.json").read_text())["env_steps"] == 384
    assert rows == read_metrics(tmp_path / "straight")


def test_sb3_ppo_same_seed_same_metrics_and_other_seed_differs(tmp_path, tiny):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        args = ["train", *tiny, "algo=sb3_ppo", *SMALL_NETS, f"train.seed={seed}", f"run.dir={tmp_path / name}"]
        assert main(args) == 0
    a, b, c = (read_metrics(tmp_path / n) for n in "abc")
    assert a == b
    assert a != c


def test_dict_observations_are_flattened_in_one_batch():
    space = gym.spaces.Dict({"direction": gym.spaces.Discrete(4, start=1),
                             "image": gym.spaces.Box(0, 255, (2, 2, 3), np.uint8)})
    flat = flat_observation_space(space, "test")
    batch = gym.vector.utils.batch_space(space, 5)
    batch.seed(0)
    obs = batch.sample()
    out = flatten_observations(space, obs, 5)
    assert out.shape == (5, 16) and out.dtype == np.float32 and flat.shape == (16,)
    for i in range(5):  # per-sample reference: gymnasium's own flatten
        one = {k: v[i] for k, v in obs.items()}
        np.testing.assert_array_equal(out[i], gym.spaces.flatten(space, one))
    box = gym.spaces.Box(0.0, 1.0, (4,), np.float32)
    x = np.zeros((5, 4), np.float32)
    assert np.shares_memory(flatten_observations(box, x, 5), x)  # a Box batch passes through, uncopied


@pytest.mark.parametrize(
    "args,message",
    [
        (["algo=sb3_ppo", "env.id=Pendulum-v1"], "algo=sb3_ppo needs a Discrete action space; env 'Pendulum-v1'"),
        (["algo=sb3_ppo", "env.id=Blackjack-v1"], "env 'Blackjack-v1': the SB3 baselines cannot use observation space"),
        (["algo=sb3_recurrent_ppo", "ppo.gae_cut=episode"], "algo=sb3_recurrent_ppo needs ppo.gae_cut=trial"),
        (["algo=sb3_ppo", "sb3.net_arch=[64,0]"], "bad value 0 for 'sb3.net_arch[1]': must be >= 1"),
        (["algo=sb3_ppo", "env.num_envs=1", "ppo.rollout_length=2", "ppo.sequence_length=1", "ppo.num_minibatches=2"],
         "SB3 minibatches need at least 2 steps"),
        (["algo=sb3_recurrent_ppo", "ppo.value_clip=0"], "bad value 0.0 for 'ppo.value_clip': SB3 needs > 0"),
        (["algo=sb3"], "bad value 'sb3' for 'algo'"),
    ],
)
def test_sb3_config_errors_are_one_line_and_write_nothing(tmp_path, capsys, args, message):
    run_dir = tmp_path / "run"
    assert main(["train", *args, f"run.dir={run_dir}"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not run_dir.exists()


def test_memo_rl_does_not_import_stable_baselines3_until_an_sb3_algo_runs():
    code = "import sys, memo_rl.train, memo_rl.config, memo_rl.registry, memo_rl.cli; " \
           "print(sorted(m for m in ('stable_baselines3', 'sb3_contrib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("algo", ["sb3_ppo", "sb3_recurrent_ppo"])
def test_sb3_optimizer_gets_our_eps_and_decoupled_weight_decay(tiny, algo):
    """The baselines' optimizer takes ``ppo.adam_eps`` and ``ppo.weight_decay`` as our trainer does
    (Adam with AdamW's decoupled decay), so a comparison changes only the algorithm."""
    from memo_rl.config import build_config
    from memo_rl.sb3_baselines import build_model

    cfg = build_config("quickstart", [*tiny, f"algo={algo}", *SMALL_NETS, "ppo.adam_eps=1e-8", "ppo.weight_decay=0.3"])
    venv = TrialVecEnv(registry.make_vector_env(cfg.env), cut="episode")
    try:
        (group,) = build_model(cfg, venv, torch.device("cpu")).policy.optimizer.param_groups
    finally:
        venv.close()
    assert (group["eps"], group["weight_decay"], group["decoupled_weight_decay"]) == (1e-8, 0.3, True)
