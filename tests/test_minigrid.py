"""MiniGrid memory presets: a 3x3 view, symbolic or RGB observations, async vector envs, training."""

import json

import pytest

from memo_rl import registry
from memo_rl.cli import main
from memo_rl.config import build_config

pytest.importorskip("minigrid")

SHORT = ["env.num_envs=2", "ppo.rollout_length=16", "ppo.num_minibatches=2", "ppo.epochs=1", "train.total_steps=64",
         "run.progress=false", "run.checkpoint_interval=1"]


@pytest.mark.parametrize("preset,size", [("minigrid_memory_s7", 7), ("minigrid_memory_s13random", 13),
                                         ("minigrid_memory_s17random", 17)])
def test_presets_give_a_3x3_view_of_the_memory_task(preset, size):
    cfg = build_config(f"env/{preset}", ["env.num_envs=4", "env.vectorization=sync"])
    env = registry.make_vector_env(cfg.env)
    try:
        assert env.single_observation_space["image"].shape == (3, 3, 3)  # mission text dropped
        assert set(env.single_observation_space) == {"image", "direction"}
        assert env.get_attr("width") == (size,) * 4
    finally:
        env.close()
    assert build_config(f"env/{preset}").env.vectorization == "async"  # as the preset runs them


def test_gru_trains_on_minigrid_memory_with_async_envs(tmp_path):
    run_dir = tmp_path / "run"
    assert main(["train", "minigrid_memory_s13random_gru", *SHORT, f"run.dir={run_dir}"]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env_id"] == "MiniGrid-MemoryS13Random-v0" and summary["env_steps"] == 64


def test_rgb_observations_through_a_wrapper(tmp_path):
    run_dir = tmp_path / "rgb"
    args = ["train", "minigrid_memory_s13random_gru", *SHORT,
            "env.vectorization=sync", "env.wrappers=[minigrid.wrappers:RGBImgPartialObsWrapper]", f"run.dir={run_dir}"]
    assert main(args) == 0
    cfg = build_config(None, ["env.id=MiniGrid-MemoryS7-v0", "env.kwargs.agent_view_size=3", "env.num_envs=4",
                              "env.wrappers=[minigrid.wrappers:RGBImgPartialObsWrapper]"])
    env = registry.make_vector_env(cfg.env)
    try:
        assert env.single_observation_space["image"].shape == (24, 24, 3)  # 3x3 cells of 8x8 pixels
    finally:
        env.close()


@pytest.mark.parametrize("wrapper,message", [("nope", "write it as module:Class"),
                                             ("minigrid.wrappers:Nope", "cannot import env.wrappers entry")])
def test_bad_wrappers_are_one_line(tmp_path, capsys, wrapper, message):
    assert main(["train", "minigrid_memory_s13random_gru", *SHORT,
                 f"env.wrappers=[{wrapper}]", f"run.dir={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "r").exists()


def test_eval_plays_minigrid_episodes_as_trials(tmp_path):
    """A trial of a plain gymnasium task is one episode; MiniGrid Memory has no registered time limit
    (it truncates itself), so evaluation plays until every env's episode ended."""
    run_dir = tmp_path / "run"
    assert main(["train", "minigrid_memory_s13random_gru", *SHORT,
                 "env.id=MiniGrid-MemoryS7-v0", "env.vectorization=sync", f"run.dir={run_dir}"]) == 0
    out = tmp_path / "eval"
    assert main(["eval", str(run_dir), "eval.trials=3", "eval.bin_steps=50", "eval.video_steps=0",
                 f"eval.output={out}"]) == 0
    entry = json.loads((out / "results.json").read_text())["checkpoints"][-1]
    episodes = sum(row["episodes"] for row in entry["bins"])
    assert episodes == 3 and entry["trial_steps"] <= 5 * 7 * 7  # MemoryS7 truncates at 5 x size^2 steps
    assert 0 < entry["bins"][-1]["episodes"] and all(row["step_ms"] > 0 for row in entry["bins"])
