"""MiniGrid memory presets: a 3x3 view, symbolic or RGB observations, async vector envs, training."""

import json

import numpy as np
import pytest
import yaml

from memo_rl import registry
from memo_rl.cli import main
from memo_rl.config import build_config
from memo_rl.plots import read_metric

pytest.importorskip("minigrid")

SHORT = ["env.num_envs=2", "ppo.rollout_length=16", "ppo.num_minibatches=2", "ppo.epochs=1", "train.total_steps=64",
         "run.progress=false", "run.checkpoint_interval=1"]


@pytest.mark.parametrize("preset,size", [("minigrid_memory_s7", 7), ("minigrid_memory_s13random", 13),
                                         ("minigrid_memory_s17random", 17)])
def test_presets_give_a_3x3_view_of_the_memory_task(preset, size):
    cfg = build_config(f"env/{preset}", ["env.num_envs=4", "env.vectorization=sync"])
    env = registry.make_vector_env(cfg.env)
    try:
        assert env.single_observation_space["image"].shape == (3, 3, 20)  # one-hot cells; mission text dropped
        assert set(env.single_observation_space) == {"image", "direction"}
        assert env.get_attr("width") == (size,) * 4
        # The agent's CNN reads the view as 3x3 cells of 20 channels (not 3 channels of 3x20).
        agent = registry.make_agent(cfg, env.single_observation_space, env.single_action_space)
        (image_encoder,) = [e for e in agent.encoder.encoders if hasattr(e, "convs")]
        assert image_encoder.convs[0].in_channels == 20 and not image_encoder.channel_first
    finally:
        env.close()
    assert build_config(f"env/{preset}").env.vectorization == "async"  # as the preset runs them


def test_one_hot_view_decodes_to_minigrids_symbolic_view_and_separates_key_from_ball():
    """SymbolicOneHot lights exactly one object, one colour and one state channel per cell, at the
    indices of MiniGrid's own view; after the encoder's bounds scaling, a key and a ball differ by
    a whole unit (with the declared 0..255 bounds they differed by 1/255)."""
    import gymnasium as gym
    from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX

    from envs.minigrid import ONE_HOT_CHANNELS, SymbolicOneHot

    raw = gym.make("MiniGrid-MemoryS13Random-v0", agent_view_size=3)
    wrapped = SymbolicOneHot(gym.make("MiniGrid-MemoryS13Random-v0", agent_view_size=3))
    n_obj, n_col = len(OBJECT_TO_IDX), len(COLOR_TO_IDX)
    seen_objects = set()
    for seed in range(20):
        symbolic, _ = raw.reset(seed=seed)
        one_hot, _ = wrapped.reset(seed=seed)
        for step in range(15):
            image = one_hot["image"]
            assert image.shape == (3, 3, ONE_HOT_CHANNELS) and wrapped.observation_space.contains(one_hot)
            assert wrapped.observation_space["image"].high.max() == 1  # unit scale at the encoder
            assert (image[..., :n_obj].sum(-1) == 1).all() and (image[..., n_obj:n_obj + n_col].sum(-1) == 1).all()
            assert (image[..., n_obj + n_col:].sum(-1) == 1).all()
            decoded = np.stack([image[..., :n_obj].argmax(-1), image[..., n_obj:n_obj + n_col].argmax(-1),
                                image[..., n_obj + n_col:].argmax(-1)], axis=-1)
            np.testing.assert_array_equal(decoded, symbolic["image"])
            assert one_hot["direction"] == symbolic["direction"]
            seen_objects |= set(symbolic["image"][..., 0].ravel().tolist())
            action = (seed + step) % 3  # left, right, forward: walks and turns through the start room
            symbolic, *_ = raw.step(action)
            one_hot, *_ = wrapped.step(action)
    assert {OBJECT_TO_IDX["wall"], OBJECT_TO_IDX["empty"]} <= seen_objects
    assert OBJECT_TO_IDX["key"] in seen_objects or OBJECT_TO_IDX["ball"] in seen_objects  # the cue was in view


def test_one_hot_view_of_the_fully_observed_grid():
    import gymnasium as gym
    from minigrid.wrappers import FullyObsWrapper

    from envs.minigrid import ONE_HOT_CHANNELS, SymbolicOneHot

    env = SymbolicOneHot(FullyObsWrapper(gym.make("MiniGrid-MemoryS7-v0")))
    obs, _ = env.reset(seed=0)
    assert obs["image"].shape == (7, 7, ONE_HOT_CHANNELS) and (obs["image"].sum(-1) == 3).all()


def test_one_hot_view_refuses_pixels():
    import gymnasium as gym
    from minigrid.wrappers import RGBImgPartialObsWrapper

    from envs.minigrid import SymbolicOneHot

    with pytest.raises(ValueError, match=r"needs MiniGrid's symbolic view .*shape \(3, 3, 3\).*\(24, 24, 3\)"):
        SymbolicOneHot(RGBImgPartialObsWrapper(gym.make("MiniGrid-MemoryS7-v0", agent_view_size=3)))


@pytest.mark.parametrize("preset,env_id,core", [("minigrid_memory_s13random_gru", "MiniGrid-MemoryS13Random-v0", "gru"),
                                                ("minigrid_memory_s17random_memo", "MiniGrid-MemoryS17Random-v0", "memo")])
def test_presets_train_on_minigrid_memory_with_async_envs(tmp_path, preset, env_id, core):
    run_dir = tmp_path / "run"
    assert main(["train", preset, *SHORT, f"run.dir={run_dir}"]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env_id"] == env_id and summary["env_steps"] == 64 and summary["memory_core"] == core


@pytest.mark.parametrize("agent", ["gru", "none"])
def test_two_stage_recipe_chains_through_init_from(tmp_path, agent):
    """Stage 1 (bonus + 99-layout pool), then stage 2 from its run directory (bonus, no pool,
    entropy 0.03): stage 2 starts from stage 1's final weights, and both evaluate on MiniGrid's own
    layouts without the bonus (docs/results.md, MiniGrid section)."""
    stage1, stage2 = tmp_path / "stage1", tmp_path / "stage2"
    assert main(["train", f"minigrid_memory_s13random_{agent}_stage1", *SHORT, f"run.dir={stage1}"]) == 0
    assert main(["train", f"minigrid_memory_s13random_{agent}_stage2", *SHORT, f"run.init_from={stage1}",
                 f"run.dir={stage2}"]) == 0
    first, second = (yaml.safe_load((d / "config.yaml").read_text()) for d in (stage1, stage2))
    assert "envs.minigrid:ReferenceLayoutPool" in first["env"]["wrappers"]
    assert "envs.minigrid:ReferenceLayoutPool" not in second["env"]["wrappers"]
    assert first["env"]["wrappers"][0] == second["env"]["wrappers"][0] == "envs.minigrid:FirstVisitBonus"
    assert (first["ppo"]["ent_coef"], second["ppo"]["ent_coef"]) == (0.01, 0.03)
    assert second["run"]["init_from"] == str(stage1 / "checkpoints" / "ckpt_000000000064.pt")
    for config in (first, second):
        assert config["eval"]["env_wrappers"] == ["envs.minigrid:SymbolicOneHot", "envs.minigrid:NavigationActions"]


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


@pytest.fixture(scope="module")
def s7_run(tmp_path_factory):
    """A short run on MiniGrid-MemoryS7 (one-hot view), shared by the evaluation tests."""
    run_dir = tmp_path_factory.mktemp("minigrid") / "run"
    assert main(["train", "minigrid_memory_s13random_gru", *SHORT,
                 "env.id=MiniGrid-MemoryS7-v0", "env.vectorization=sync", f"run.dir={run_dir}"]) == 0
    return run_dir


def test_eval_plays_minigrid_episodes_as_trials(s7_run, tmp_path, capsys):
    """A trial of a plain gymnasium task is one episode; MiniGrid Memory has no registered time limit
    (it truncates itself), so evaluation plays until every env's episode ended. The success rate over
    all episodes is recorded and printed."""
    out = tmp_path / "eval"
    assert main(["eval", str(s7_run), "eval.trials=3", "eval.bin_steps=50", "eval.video_steps=0",
                 f"eval.output={out}"]) == 0
    entry = json.loads((out / "results.json").read_text())["checkpoints"][-1]
    episodes = sum(row["episodes"] for row in entry["bins"])
    assert episodes == entry["episodes"] == 3 and entry["trial_steps"] <= 5 * 7 * 7  # MemoryS7: 5 x size^2 steps
    successes = sum(row["success_rate"] * row["episodes"] for row in entry["bins"] if row["episodes"])
    assert entry["success_rate"] == pytest.approx(successes / 3)
    assert f"success {entry['success_rate']:.3f} over 3 episodes | trial return" in capsys.readouterr().out
    assert 0 < entry["bins"][-1]["episodes"] and all(row["step_ms"] > 0 for row in entry["bins"])


def test_eval_can_replace_the_runs_wrappers(s7_run, tmp_path, capsys):
    """eval.env_wrappers swaps the wrapper stack (here: layouts from the reference's pool) and is
    recorded with the results; a bad entry is one line."""
    wrappers = ["envs.minigrid:ReferenceLayoutPool", "envs.minigrid:SymbolicOneHot"]
    out = tmp_path / "eval"
    assert main(["eval", str(s7_run), "eval.trials=2", "eval.video_steps=0", f"eval.output={out}",
                 f"eval.env_wrappers=[{','.join(wrappers)}]"]) == 0
    assert json.loads((out / "results.json").read_text())["settings"]["env_wrappers"] == wrappers
    capsys.readouterr()
    assert main(["eval", str(s7_run), "eval.video_steps=0", f"eval.output={tmp_path / 'bad'}",
                 "eval.env_wrappers=[envs.minigrid:NoSuchWrapper]"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot import env.wrappers entry 'envs.minigrid:NoSuchWrapper'" in err[0]


def _memory_env_next_to(target: str, env=None):
    """A MiniGrid Memory env (by default S7 through our SuccessInfo) with the agent one step from
    the matching ('success') or the other ('failure') object's cell at the end of the hallway."""
    import gymnasium as gym

    from envs.minigrid import SuccessInfo

    if env is None:
        env = SuccessInfo(gym.make("MiniGrid-MemoryS7-v0", agent_view_size=3))
    env.reset(seed=3)
    base = env.unwrapped
    x, y = getattr(base, f"{target}_pos")
    middle = base.height // 2
    base.agent_pos = (x, middle)
    base.agent_dir = 1 if y > middle else 3  # facing south or north, towards the target cell
    return env


@pytest.mark.parametrize("target", ["success", "failure"])
def test_split_view_names_the_end_object_the_agent_faces_at_the_split(target):
    """memory_split_view: at the split facing an end cell, the object behind that cell (the cue's
    type beyond the success cell, the other type beyond the failure cell); None once it faces east."""
    from envs.minigrid import memory_cue_cell, memory_split_view

    base = _memory_env_next_to(target).unwrapped
    cue = base.grid.get(*memory_cue_cell(base)).type
    other = {"key": "ball", "ball": "key"}[cue]
    assert memory_split_view(base) == (cue if target == "success" else other)
    base.agent_dir = 0  # east: no end object in view, nothing decided yet
    assert memory_split_view(base) is None


@pytest.mark.parametrize("target,success", [("success", 1.0), ("failure", 0.0)])
def test_success_flag_follows_the_object_picked(target, success):
    env = _memory_env_next_to(target)
    _, reward, terminated, truncated, info = env.step(2)  # forward onto the target cell
    assert terminated and not truncated
    assert info["success"] == success and (reward > 0) == bool(success)


def test_success_flag_is_zero_on_timeout_and_absent_mid_episode():
    env = _memory_env_next_to("success")
    env.unwrapped.agent_dir = 0  # facing the wall: forward does not move
    _, _, terminated, truncated, info = env.step(2)
    assert not (terminated or truncated) and "success" not in info
    env.unwrapped.step_count = env.unwrapped.max_steps - 1
    _, reward, terminated, truncated, info = env.step(0)
    assert truncated and not terminated and reward == 0 and info["success"] == 0.0


def test_vector_envs_report_minigrid_success(tmp_path):
    """The success flag reaches the trainer's metrics through gymnasium's vector env (final_info)."""
    cfg = build_config("env/minigrid_memory_s7", ["env.num_envs=4", "env.vectorization=sync"])
    env = registry.make_vector_env(cfg.env)
    rng = np.random.default_rng(0)
    flags = []
    try:
        env.reset(seed=0)
        for _ in range(600):
            _, reward, terminated, truncated, info = env.step(rng.integers(0, 3, size=4))
            ended = terminated | truncated
            success = registry.episode_success(info, ended)
            if not ended.any():
                continue  # gymnasium's vector env has final_info only on steps where an episode ended
            flags += success[ended].tolist()
            assert np.isnan(success[~ended]).all()
            assert (success[ended] == (terminated & (reward > 0))[ended]).all()
    finally:
        env.close()
    assert flags and set(flags) <= {0.0, 1.0}


def test_navigation_actions_are_minigrids_left_right_forward():
    """NavigationActions offers 3 actions that move the agent exactly as MiniGrid's own 0, 1, 2."""
    import gymnasium as gym

    from envs.minigrid import NavigationActions

    raw = gym.make("MiniGrid-MemoryS13Random-v0", agent_view_size=3)
    wrapped = NavigationActions(gym.make("MiniGrid-MemoryS13Random-v0", agent_view_size=3))
    assert wrapped.action_space == gym.spaces.Discrete(3)
    raw.reset(seed=5)
    wrapped.reset(seed=5)
    start = tuple(wrapped.unwrapped.agent_pos), wrapped.unwrapped.agent_dir
    for action in [2, 0, 0, 2, 1, 2, 1, 1, 2, 2]:
        raw.step(action)
        wrapped.step(action)
        assert tuple(wrapped.unwrapped.agent_pos) == tuple(raw.unwrapped.agent_pos)
        assert wrapped.unwrapped.agent_dir == raw.unwrapped.agent_dir
    assert (tuple(wrapped.unwrapped.agent_pos), wrapped.unwrapped.agent_dir) != start  # the agent did move


def test_navigation_actions_refuse_a_non_minigrid_env():
    import gymnasium as gym

    from envs.minigrid import NavigationActions

    with pytest.raises(ValueError, match="NavigationActions needs a MiniGrid env.*Discrete\\(2\\)"):
        NavigationActions(gym.make("CartPole-v1"))


# 4 envs in one process, episodes cut at 96 steps (the memory benchmarks' limit on these tasks).
BENCHMARK_SETUP = ["env.num_envs=4", "env.vectorization=sync", "env.kwargs.max_episode_steps=96"]


def test_navigation_actions_and_a_time_limit_through_the_config():
    """The setup memory benchmarks use on these tasks: 3 actions, episodes cut at 96 steps
    (``env.kwargs.max_episode_steps`` reaches gymnasium's TimeLimit); a cut episode is a failure."""
    cfg = build_config("env/minigrid_memory_s13random", [
        *BENCHMARK_SETUP, "env.wrappers=[envs.minigrid:SymbolicOneHot,envs.minigrid:NavigationActions]"])
    env = registry.make_vector_env(cfg.env)
    try:
        assert env.single_action_space.n == 3
        env.reset(seed=0)
        for _ in range(95):
            _, _, terminated, truncated, _ = env.step(np.zeros(4, dtype=np.int64))  # spin in place
            assert not (terminated | truncated).any()
        _, _, terminated, truncated, info = env.step(np.zeros(4, dtype=np.int64))  # the 96th step
        assert truncated.all() and not terminated.any() and (registry.episode_success(info, truncated) == 0).all()
    finally:
        env.close()


def test_cue_in_view_at_start_shows_the_cue_on_the_first_step():
    """The diagnostic start: the agent stands beside the cue, which is the cell to its left in the
    3x3 view (MiniGrid indexes the view [x, y], the agent at the bottom middle)."""
    import gymnasium as gym
    from minigrid.core.constants import OBJECT_TO_IDX

    from envs.minigrid import CueInViewAtStart, SymbolicOneHot, memory_cue_cell

    env = CueInViewAtStart(gym.make("MiniGrid-MemoryS13Random-v0", agent_view_size=3))
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        base = env.unwrapped
        assert memory_cue_cell(base) == (1, base.height // 2 - 1)  # where MiniGrid puts the start-room object
        cue = base.grid.get(*memory_cue_cell(base))
        assert cue.type in ("key", "ball")
        assert tuple(base.agent_pos) == (1, base.height // 2) and base.agent_dir == 0
        assert obs["image"][0, 2, 0] == OBJECT_TO_IDX[cue.type]  # left of the agent
    for wrong in (gym.make("MiniGrid-Empty-5x5-v0"), SymbolicOneHot(gym.make("MiniGrid-MemoryS7-v0", agent_view_size=3))):
        with pytest.raises(ValueError, match="must wrap a MiniGrid Memory env before any observation wrapper"):
            CueInViewAtStart(wrong)


def test_cue_in_view_at_start_through_the_config():
    """The diagnostic as docs/results.md runs it: first in env.wrappers, under gymnasium's vector env."""
    cfg = build_config("env/minigrid_memory_s13random", [
        *BENCHMARK_SETUP,
        "env.wrappers=[envs.minigrid:CueInViewAtStart,envs.minigrid:SymbolicOneHot,envs.minigrid:NavigationActions]"])
    env = registry.make_vector_env(cfg.env)
    try:
        obs, _ = env.reset(seed=0)
        assert all(tuple(pos) == (1, 6) for pos in env.get_attr("agent_pos"))  # height 13: row 6
        cue_channels = obs["image"][:, 0, 2, :11]  # [N, 11]: object-type one-hot of the cell left of the agent
        assert set(cue_channels.argmax(-1).tolist()) <= {5, 6}  # a key or a ball in every env
    finally:
        env.close()


def test_recall_trains_on_the_one_hot_view_and_the_cue_probe_reads_the_run(tmp_path):
    """Past-input recall on a Dict observation (the one-hot view), then
    experiments/minigrid_cue_probe.py on the run's checkpoint (docs/results.md, MiniGrid section)."""
    from conftest import run_experiment

    run_dir = tmp_path / "run"
    wrappers = "env.wrappers=[envs.minigrid:CueInViewAtStart,envs.minigrid:SymbolicOneHot,envs.minigrid:NavigationActions]"
    assert main(["train", "minigrid_memory_s13random_gru", *SHORT, "env.vectorization=sync", wrappers,
                 "agent.recall_max_lag=8", f"run.dir={run_dir}"]) == 0
    _, recall = read_metric(run_dir, "recall_loss")
    assert len(recall) > 0 and (recall > 0).all()
    done = run_experiment("minigrid_cue_probe.py", str(run_dir), "--envs", "8", "--steps", "200", "--probe-steps", "0")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "episodes, success" in lines[0]
    # CueInViewAtStart: every episode starts in column 1 with the cue in view.
    assert lines[1].startswith("  cue seen: ") and "(1.00 of all)" in lines[1]
    assert lines[2].startswith("  start column 1: ") and "cue seen in 1.00" in lines[2]
    by_cue = [line for line in lines if line.startswith("  cue a ")]
    assert by_cue and all("cue seen in 1.00" in line for line in by_cue)
    assert sum(int(line.split()[3]) for line in by_cue) == int(lines[0].split()[1])  # every episode, once
    assert lines[-1].startswith("  step  0: ")


def test_large_tile_rgb_view_draws_the_3x3_view_at_84x84_with_the_cue_beside_the_agent():
    """LargeTileRGBView: the 3x3 view in 28-pixel tiles. With the cue in view at the start (north of
    the agent, which faces east), the cue's green fills part of the view's bottom-left tile, the
    cell on the agent's left, and no other tile holds that green."""
    cfg = build_config("env/minigrid_memory_s7", [
        "env.num_envs=4", "env.vectorization=sync",
        "env.wrappers=[envs.minigrid:CueInViewAtStart,envs.minigrid:LargeTileRGBView]"])
    env = registry.make_vector_env(cfg.env)
    try:
        assert env.single_observation_space["image"].shape == (84, 84, 3)
        obs, _ = env.reset(seed=0)
        image = obs["image"][0]  # [84, 84, 3]: rows top (far) to bottom (the agent's row)
        tiles = image.reshape(3, 28, 3, 28, 3).transpose(0, 2, 1, 3, 4)  # [84, 84, 3] -> [3, 3, 28, 28, 3] tiles
        # MiniGrid's green objects, lightened like every visible cell of the view: about (76, 255, 76)
        green = (tiles[..., 1] > 200) & (tiles[..., 0] < 120) & (tiles[..., 2] < 120)
        counts = green.sum(axis=(2, 3))  # [3, 3] green pixels per tile
        assert counts[2, 0] > 50
        assert np.count_nonzero(counts) == 1
    finally:
        env.close()


def _layout(env) -> tuple:
    """What decides a Memory episode: start cell, cue, and the rewarded cell."""
    from envs.minigrid import memory_cue_cell

    base = env.unwrapped
    return tuple(base.agent_pos), type(base.grid.get(*memory_cue_cell(base))).__name__, base.success_pos


def _layouts(env, seeds) -> list:
    layouts = []
    for seed in seeds:
        env.reset(seed=seed)
        layouts.append(_layout(env))
    return layouts


def _s13random():
    import gymnasium as gym

    return gym.make("MiniGrid-MemoryS13Random-v0", agent_view_size=3)


def test_reference_layout_pool_replays_minigrids_layouts_for_seeds_0_to_98():
    from envs.minigrid import ReferenceLayoutPool

    pool_layouts = set(_layouts(_s13random(), range(ReferenceLayoutPool.POOL_SIZE)))
    env = ReferenceLayoutPool(_s13random())
    played = []
    for first_seed in (7, 7, 8):
        env.reset(seed=first_seed)
        played.append(_layouts(env, [None] * 300))  # unseeded resets draw from the pool
    assert played[0] == played[1] and played[0] != played[2]  # seeded draws, as every env's are
    assert set(played[0]) <= pool_layouts
    assert len(set(played[0])) > len(pool_layouts) // 2  # draws spread over the pool
    outside = set(_layouts(_s13random(), range(1000, 1300)))
    assert not outside <= pool_layouts  # MiniGrid's own seeds give layouts beyond the pool


def _bonus_env():
    """S9 Memory through the training stack's order: FirstVisitBonus inside, SuccessInfo outside."""
    import gymnasium as gym

    from envs.minigrid import FirstVisitBonus, NavigationActions, SuccessInfo

    return SuccessInfo(NavigationActions(FirstVisitBonus(gym.make("MiniGrid-MemoryS9-v0", agent_view_size=3))))


def test_first_visit_bonus_pays_each_new_cell_once_per_episode():
    from envs.minigrid import FirstVisitBonus

    env = _bonus_env()
    env.reset(seed=0)
    base = env.unwrapped
    start = tuple(int(v) for v in base.agent_pos)
    base.agent_dir = 2  # facing west, down the hallway towards the start room (free cells)
    rewards = [env.step(2)[1] for _ in range(2)]  # two new cells
    env.step(0), env.step(0)  # turn around
    rewards += [env.step(2)[1] for _ in range(2)]  # back over the same two cells to the start cell
    assert rewards == [FirstVisitBonus.BONUS] * 2 + [0.0, 0.0]
    assert tuple(int(v) for v in base.agent_pos) == start
    # A new episode forgets the visits: the same walk pays again.
    env.reset(seed=0)
    base.agent_dir = 2
    assert env.step(2)[1] == FirstVisitBonus.BONUS


@pytest.mark.parametrize("target,success", [("success", 1.0), ("failure", 0.0)])
def test_first_visit_bonus_keeps_success_on_minigrid_reward(target, success):
    """Stepping onto either end cell is a first visit (the bonus is paid), but only the matching
    object is a success: the flag comes from MiniGrid's reward, not the bonus-inflated one."""
    from envs.minigrid import FirstVisitBonus

    env = _memory_env_next_to(target, _bonus_env())
    _, reward, terminated, _, info = env.step(2)  # forward onto the target cell
    assert terminated and info["success"] == success
    assert reward > FirstVisitBonus.BONUS if success else reward == FirstVisitBonus.BONUS


def test_first_visit_bonus_refuses_a_non_minigrid_env():
    import gymnasium as gym

    from envs.minigrid import FirstVisitBonus

    with pytest.raises(ValueError, match="FirstVisitBonus needs a MiniGrid env"):
        FirstVisitBonus(gym.make("CartPole-v1"))
