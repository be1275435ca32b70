"""End-to-end training: run-directory contract, determinism, replay equality, resume, CLI errors."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import read_metrics

from memo_rl.checkpoint import checkpoint_path, list_checkpoints, load_checkpoint
from memo_rl.cli import main
from memo_rl.config import build_config
from memo_rl.train import Trainer, resolve_run
from memo_rl.types import AgentInputs

REPO = Path(__file__).resolve().parent.parent


def test_train_writes_the_run_directory_contract(tmp_path, tiny, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "quickstart", *tiny, f"run.dir={run_dir}", "run.video_interval=3", "run.video_steps=5"]) == 0
    # The start of the log says how the agent reads its inputs, before any progress line.
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("[memo-rl] training gru on memo_rl/DarkKeyToDoor-v0")
    assert out[1].startswith("[memo-rl] agent: vector [4] -> MLP 4-") and "GRUCore(d_model=" in out[1]
    assert out[1].endswith(" parameters")
    assert (run_dir / "config.yaml").read_text().startswith("preset: quickstart")
    rows = read_metrics(run_dir, drop_timing=False)
    assert [int(r["global_step"]) for r in rows] == [64 * i for i in range(1, 7)]
    for column in ("global_step", "episode_return_mean", "episode_length_mean", "success_rate", "fps"):
        assert column in rows[0]
    steps = [step for step, _ in list_checkpoints(run_dir / "checkpoints")]
    assert steps == [128, 256, 384]
    ckpt = load_checkpoint(run_dir / "checkpoints" / "ckpt_000000000384.pt")  # weights_only=True inside
    assert ckpt["global_step"] == 384 and ckpt["config"]["memory"]["core"] == "gru"
    assert {"model", "optimizer", "rng", "env_state", "carry", "tracker"} <= set(ckpt)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env_steps"] == 384 and summary["updates"] == 6

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"images": 0}).Reload()
    tags = events.Tags()
    assert {"rollout/episode_return_mean", "loss/policy", "train/lr", "perf/fps"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("loss/value")] == [64 * i for i in range(1, 7)]
    gif = events.Images("rollout/video")[0]
    assert gif.encoded_image_string[:6] == b"GIF89a" and gif.step == 192


def test_same_seed_same_metrics_and_other_seed_differs(tmp_path, tiny):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        assert main(["train", *tiny, f"train.seed={seed}", f"run.dir={tmp_path / name}"]) == 0
    a, b, c = (read_metrics(tmp_path / n) for n in "abc")
    assert a == b
    assert a != c


TRANSFORMER = ["memory.n_layers=1", "memory.n_heads=2", "memory.segment_length=6", "memory.summary_length=2"]


@pytest.mark.parametrize("core,agent", [("none", []), ("gru", []), ("lstm", []),
                                        ("gru", ["agent.core_skip=true", "agent.head_hidden=8"]),
                                        ("memo", TRANSFORMER), ("rmt", TRANSFORMER), ("fct", TRANSFORMER[:2]),
                                        ("trxl", [*TRANSFORMER[:2], "memory.window=5"]),
                                        ("hcam", [*TRANSFORMER[:2], "memory.chunk_size=5", "memory.top_k=2"]),
                                        ("memo", [*TRANSFORMER, "memory.read=hcam", "memory.top_k=2"])])
def test_update_replays_rollout_exactly(tmp_path, tiny, core, agent):
    """Before any gradient step, replaying the stored sequences from the stored memory snapshots
    gives the log-probs and values the rollout computed (resets fall inside the rollout)."""
    cfg = build_config(None, [*tiny, f"memory.core={core}", "ppo.rollout_length=48", "ppo.sequence_length=16", *agent])
    trainer = Trainer(cfg, tmp_path)
    trainer.collect()  # 48 steps x 4 envs; the trial boundary at step 40 lands mid-rollout
    storage = trainer.storage
    assert storage.resets[40].all() and storage.resets[0].all() and not storage.resets[1:40].any()
    advantages = torch.zeros_like(storage.values)
    seen = 0
    with torch.no_grad():
        for batch in storage.minibatches(advantages, advantages, num_minibatches=3):
            out = trainer.agent.forward_sequence(batch.inputs, batch.initial_state, batch.resets)
            log_probs = torch.distributions.Categorical(logits=out.logits).log_prob(batch.actions)  # reference maths
            torch.testing.assert_close(log_probs, batch.log_probs, atol=1e-5, rtol=0)
            torch.testing.assert_close(out.values, batch.values, atol=1e-5, rtol=0)
            seen += batch.actions.shape[1]
    assert seen == 4 * 3  # every (env, sequence) exactly once
    # The trial ended at step 39 (a time limit): GAE is cut there and bootstraps from V(final obs).
    assert storage.dones[39].all() and not storage.dones[:39].any()
    assert (storage.truncation_values[39] != 0).all()
    assert (storage.truncation_values[:39] == 0).all()


@pytest.mark.parametrize("core,agent", [("memo", TRANSFORMER), ("fct", TRANSFORMER[:2]), ("gru", []),
                                        ("hcam", [*TRANSFORMER[:2], "memory.chunk_size=5", "memory.top_k=2"]),
                                        ("memo", [*TRANSFORMER, "memory.read=hcam", "memory.top_k=2"])])
def test_memory_is_rebuilt_with_the_new_weights_after_each_update(tmp_path, tiny, core, agent):
    """After an update the memory carried on equals what the *updated* agent would hold had it
    stepped through the whole trial so far; without the rebuild it would act on stale memory."""
    cfg = build_config(None, [*tiny, f"memory.core={core}", *agent, "ppo.rollout_length=16", "ppo.lr=0.01"])
    trainer = Trainer(cfg, tmp_path)  # trials of 40 steps: two rollouts stay inside the first trial
    seen_inputs, seen_resets = [], []
    for _ in range(2):
        trainer.collect()
        st = trainer.storage
        seen_inputs.append(AgentInputs(st.obs.clone(), st.prev_actions.clone(), st.prev_rewards.clone(),
                                       st.episode_starts.clone()))
        seen_resets.append(st.resets.clone())
        trainer.update_policy()
        stale = trainer.carry.memory
        trainer.refresh_memory()
    assert len(trainer.history.chunks) == 2  # the trial began in the first rollout
    agent, carry = trainer.agent.eval(), trainer.carry
    with torch.no_grad():
        state = agent.initial_state(4, "cpu")
        for inputs, resets in zip(seen_inputs, seen_resets):
            for t in range(16):
                state = agent.step(AgentInputs(*(x[t] for x in inputs)), state, resets[t]).state
        rebuilt = agent.step(carry.inputs, carry.memory, carry.resets)
        reference = agent.step(carry.inputs, state, carry.resets)
        old = agent.step(carry.inputs, stale, carry.resets)
    torch.testing.assert_close(rebuilt.logits, reference.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(rebuilt.values, reference.values, atol=1e-5, rtol=0)
    assert (old.values - reference.values).abs().max() > 1e-4
    # the third rollout (steps 32-47) holds the next trial's start for every env: older ones go
    trainer.collect()
    trainer.refresh_memory()
    assert len(trainer.history.chunks) == 1


def test_resume_after_sigkill_continues_exactly(tmp_path, tiny):
    common = [*tiny, "ppo.lr_schedule=constant", "run.checkpoint_interval=2"]
    total = "train.total_steps=1920"  # 30 updates
    assert main(["train", *common, total, f"run.dir={tmp_path / 'straight'}"]) == 0

    run_dir = tmp_path / "killed"
    cmd = [sys.executable, "-m", "memo_rl", "train", *common, "train.total_steps=100000000", f"run.dir={run_dir}"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list_checkpoints(run_dir / "checkpoints") and time.time() < deadline:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    checkpoints = list_checkpoints(run_dir / "checkpoints")
    assert checkpoints, "the run was killed before writing any checkpoint"
    for _, path in checkpoints:
        load_checkpoint(path)  # every file under a checkpoint name is complete
    newest = checkpoints[-1][0]
    assert newest < 1920

    assert main(["train", *common, total, f"run.dir={run_dir}", "run.resume=true"]) == 0
    assert read_metrics(run_dir) == read_metrics(tmp_path / "straight")
    assert json.loads((run_dir / "summary.json").read_text())["env_steps"] == 1920


@pytest.mark.parametrize("core", ["memo", "fct"])
def test_transformer_run_resumes_exactly(tmp_path, tiny, core):
    """A run stopped at a checkpoint and resumed matches an uninterrupted one row for row (memory
    caches, the trial history used to rebuild them and the RNG all travel in the checkpoint)."""
    common = [*tiny, f"memory.core={core}", *TRANSFORMER[:2], "ppo.lr_schedule=constant", "ppo.sequence_length=16",
              "run.log_interval=1"]
    if core == "memo":
        common += TRANSFORMER[2:]
    assert main(["train", *common, "train.total_steps=384", f"run.dir={tmp_path / 'straight'}"]) == 0
    split = tmp_path / "split"
    assert main(["train", *common, "train.total_steps=192", f"run.dir={split}"]) == 0
    assert main(["train", *common, "train.total_steps=384", f"run.dir={split}", "run.resume=true"]) == 0
    assert read_metrics(split) == read_metrics(tmp_path / "straight")
    assert float(read_metrics(split)[-1]["cached_tokens"]) > 0


def test_resuming_a_finished_run_changes_nothing(tmp_path, tiny):
    run_dir = tmp_path / "run"
    assert main(["train", *tiny, f"run.dir={run_dir}"]) == 0
    before = _tree_digest(run_dir)
    assert main(["train", *tiny, f"run.dir={run_dir}", "run.resume=true"]) == 0
    assert _tree_digest(run_dir) == before


def test_resume_skips_corrupt_checkpoint(tmp_path, tiny, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", *tiny, "train.total_steps=256", f"run.dir={run_dir}"]) == 0
    (run_dir / "checkpoints" / "ckpt_000000000320.pt").write_bytes(b"half-written garbage")
    (run_dir / "checkpoints" / ".ckpt_000000000320.pt.tmp-999").write_bytes(b"an interrupted save")
    assert main(["train", *tiny, f"run.dir={run_dir}", "run.resume=true"]) == 0
    err = capsys.readouterr().err
    assert "skipping unreadable checkpoint" in err and "from ckpt_000000000256.pt" in err
    assert "removed .ckpt_000000000320.pt.tmp-999" in err
    assert not list((run_dir / "checkpoints").glob(".ckpt_*"))
    assert int(read_metrics(run_dir)[-1]["global_step"]) == 384


def _tree_digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "extra,message",
    [
        ([], "already holds a run; pass run.resume=true"),
        (["run.resume=true", "ppo.lr=0.1"], "cannot change 'ppo.lr' when resuming"),
        (["run.resume=true", "memory.core=lstm"], "cannot change 'memory.core' when resuming"),
    ],
)
def test_existing_run_is_never_touched_by_bad_input(tmp_path, tiny, capsys, extra, message):
    run_dir = tmp_path / "run"
    assert main(["train", *tiny, "train.total_steps=128", f"run.dir={run_dir}"]) == 0
    before = _tree_digest(run_dir)
    capsys.readouterr()
    assert main(["train", *tiny, f"run.dir={run_dir}", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert _tree_digest(run_dir) == before


@pytest.mark.parametrize(
    "args,message",
    [
        (["env.id=memo_rl/DarkRom-v0"], "unregistered env id 'memo_rl/DarkRom-v0'; did you mean 'memo_rl/DarkRoom-v0'?"),
        (["env.kwargs.trial_lenght=3"], "bad env.kwargs {'trial_lenght': 3}"),
        (["env.kwargs.trial_length=0"], "trial_length must be an int >= 1, got 0"),
        (["nosuchpreset"], "unknown preset 'nosuchpreset'"),
        (["quickstart", "extra"], "unexpected argument 'extra'"),
        (["ppo.epochs=many"], "bad value 'many' for 'ppo.epochs'"),
        (["memory.n_layer=2"], "did you mean 'memory.n_layers'?"),
        (["memory.core=memo", "memory.n_heads=3"], "memory core 'memo' with agent.d_model=128: n_heads must divide"),
        (["memory.core=memo", "memory.window=0"], "bad value 0 for 'memory.window': must be >= 1"),
        (["memory.core=trxl", "memory.mlp_ratio=-1"], "bad value -1.0 for 'memory.mlp_ratio': must be > 0"),
    ],
)
def test_cli_errors_are_one_line_and_write_nothing(tmp_path, capsys, args, message):
    run_dir = tmp_path / "run"
    assert main(["train", *args, f"run.dir={run_dir}"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not run_dir.exists()


def test_init_from_starts_a_new_run_from_the_checkpoint_weights(tmp_path, tiny, capsys):
    """run.init_from carries the agent weights and nothing else: step 0, a fresh optimizer, and a
    run that then trains on from those weights (a different env variant is allowed)."""
    source = tmp_path / "source"
    assert main(["train", *tiny, f"run.dir={source}"]) == 0
    ckpt = source / "checkpoints" / "ckpt_000000000384.pt"
    weights = load_checkpoint(ckpt)["model"]
    # The same agent on a variant of the env (longer episodes): the weights fit.
    variant = [*tiny, "env.kwargs.episode_length=20", f"run.init_from={ckpt}"]
    resolved = resolve_run(None, [*variant, f"run.dir={tmp_path / 'tuned'}"])
    trainer = Trainer(resolved.cfg, resolved.run_dir, resolved.checkpoint, init_model=resolved.init_model)
    assert trainer.global_step == 0 and trainer.optimizer.state_dict()["state"] == {}
    for name, value in trainer.agent.state_dict().items():
        assert torch.equal(value, weights[name]), name
    assert "starting from the agent weights of" in capsys.readouterr().err

    assert main(["train", *variant, f"run.dir={tmp_path / 'tuned'}"]) == 0
    assert main(["train", *variant[:-1], f"run.dir={tmp_path / 'fresh'}"]) == 0
    tuned, fresh = read_metrics(tmp_path / "tuned"), read_metrics(tmp_path / "fresh")
    assert int(tuned[0]["global_step"]) == 64 and len(tuned) == len(fresh) == 6
    # Same seed and env: only the starting weights differ, and the first rollout shows it.
    assert tuned[0]["entropy"] != fresh[0]["entropy"]
    assert yaml.safe_load((tmp_path / "tuned" / "config.yaml").read_text())["run"]["init_from"] == str(ckpt)


def test_init_from_a_run_directory_takes_its_newest_checkpoint_and_records_the_file(tmp_path, tiny):
    """A two-stage curriculum names the first stage's run: its newest readable checkpoint (a corrupt
    newer one is skipped) is the one loaded, and config.yaml names that file, not the directory."""
    source = tmp_path / "source"
    assert main(["train", *tiny, "run.checkpoint_interval=2", f"run.dir={source}"]) == 0
    steps = [step for step, _ in list_checkpoints(source / "checkpoints")]
    assert len(steps) >= 2
    newest = checkpoint_path(source, steps[-1])
    newest.write_bytes(b"truncated")  # a newest checkpoint that does not load
    expected = checkpoint_path(source, steps[-2])
    resolved = resolve_run(None, [*tiny, f"run.init_from={source}", f"run.dir={tmp_path / 'stage2'}"])
    assert resolved.cfg.run.init_from == str(expected)
    weights = load_checkpoint(expected)["model"]
    assert all(torch.equal(value, weights[name]) for name, value in resolved.init_model.items())
    assert main(["train", *tiny, f"run.init_from={source}", f"run.dir={tmp_path / 'stage2'}"]) == 0
    assert yaml.safe_load((tmp_path / "stage2" / "config.yaml").read_text())["run"]["init_from"] == str(expected)


def test_init_from_may_add_or_drop_the_recall_head(tmp_path, tiny, capsys):
    """The past-input recall head is auxiliary: a run may start from a checkpoint without one (the
    head starts fresh, every other weight is the checkpoint's) or drop the one it had."""
    source = tmp_path / "source"
    assert main(["train", *tiny, "train.total_steps=128", f"run.dir={source}"]) == 0
    ckpt = source / "checkpoints" / "ckpt_000000000128.pt"
    weights = load_checkpoint(ckpt)["model"]
    capsys.readouterr()
    added = [*tiny, f"run.init_from={ckpt}", "agent.recall_max_lag=4", f"run.dir={tmp_path / 'recall'}"]
    resolved = resolve_run(None, added)
    trainer = Trainer(resolved.cfg, resolved.run_dir, resolved.checkpoint, init_model=resolved.init_model)
    state = trainer.agent.state_dict()
    assert any(name.startswith("recall.") for name in state) and not any(n.startswith("recall.") for n in weights)
    assert all(torch.equal(value, weights[name]) for name, value in state.items() if not name.startswith("recall."))
    assert "fresh recall head (agent.recall_max_lag=4)" in capsys.readouterr().err
    assert main(["train", *added]) == 0
    assert float(read_metrics(tmp_path / "recall")[0]["recall_loss"]) > 0
    # ... and back: a run without the head starts from the recall run's weights.
    back = [*tiny, f"run.init_from={tmp_path / 'recall'}", f"run.dir={tmp_path / 'back'}"]
    assert main(["train", *back]) == 0


def test_init_from_rejects_what_does_not_fit_in_one_line(tmp_path, tiny, capsys):
    source = tmp_path / "source"
    assert main(["train", *tiny, "train.total_steps=128", f"run.dir={source}"]) == 0
    ckpt = source / "checkpoints" / "ckpt_000000000128.pt"
    cases = [
        ([f"run.init_from={tmp_path / 'nope.pt'}"], "no such checkpoint file or run directory"),
        ([f"run.init_from={tmp_path}"], f"run.init_from={tmp_path}: no readable checkpoint in"),
        ([f"run.init_from={ckpt}", "agent.hidden_size=32"], "the checkpoint has agent.hidden_size=16, this run 32"),
        ([f"run.init_from={ckpt}", "memory.core=lstm"], "the checkpoint has memory.core='gru', this run 'lstm'"),
        ([f"run.init_from={ckpt}", "env.id=memo_rl/DarkRoom-v0"], "do not fit this env's agent"),
    ]
    capsys.readouterr()
    for extra, message in cases:
        run_dir = tmp_path / "run"
        assert main(["train", *tiny, *extra, f"run.dir={run_dir}"]) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert message in err[-1] and err[-1].startswith("memo-rl: error"), (extra, err)
        assert not run_dir.exists()


def test_generic_gymnasium_env_trains(tmp_path):
    """Any registered id works through gymnasium's vector envs (MiniGrid: Dict obs, text dropped)."""
    run_dir = tmp_path / "mg"
    args = [
        "env.id=MiniGrid-MemoryS7-v0", "env.num_envs=2", "ppo.rollout_length=8", "ppo.num_minibatches=2",
        "ppo.epochs=1", "train.total_steps=32", "agent.hidden_size=16", "agent.d_model=16", "run.progress=false",
        f"run.dir={run_dir}",
    ]
    assert main(["train", *args]) == 0
    assert len(read_metrics(run_dir)) == 2
    assert load_checkpoint(run_dir / "checkpoints" / "ckpt_000000000032.pt")["env_state"] is None


def test_memo_rl_core_does_not_import_envs_or_agents():
    code = "import sys, memo_rl.train, memo_rl.ppo, memo_rl.config, memo_rl.checkpoint; " \
           "print(sorted(m for m in ('envs', 'agents') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_top_level_packages_resolve_inside_repository():
    import agents
    import envs

    assert Path(envs.__file__).resolve().parent.parent == REPO
    assert Path(agents.__file__).resolve().parent.parent == REPO


def test_final_observations_of_dict_spaces_in_both_layouts():
    """Batched envs may give final observations as a dict of arrays or as per-env dicts."""
    import numpy as np

    from memo_rl.registry import final_observations

    obs = {"a": np.zeros((3, 2)), "b": np.zeros(3)}
    ended = np.array([False, True, False])
    per_env = np.empty(3, dtype=object)
    per_env[1] = {"a": np.full(2, 5.0), "b": 5.0}
    for final, value in (({"a": np.ones((3, 2)), "b": np.ones(3)}, 1.0), (per_env, 5.0)):
        out = final_observations({"final_obs": final}, obs, ended)
        assert out["a"].tolist() == [[0, 0], [value, value], [0, 0]] and out["b"].tolist() == [0, value, 0]
        assert obs["a"].sum() == 0  # the current observations are left alone


def test_summary_names_the_code_that_trained_the_run(tmp_path, tiny):
    """summary.json records the package versions and, in a git checkout, the commit and whether
    tracked files had changes; outside a git work tree the git fields are None, not borrowed."""
    from memo_rl import __version__
    from memo_rl.provenance import code_version

    assert main(["train", *tiny, f"run.dir={tmp_path / 'run'}"]) == 0
    code = json.loads((tmp_path / "run" / "summary.json").read_text())["code"]
    assert code["memo_rl"] == __version__ and code["torch"] == torch.__version__
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0 and (REPO / ".git").exists():
        assert code["git_commit"] == head.stdout.strip() and isinstance(code["git_dirty"], bool)
    plain = tmp_path / "not_a_repo"
    plain.mkdir()
    assert code_version(plain)["git_commit"] is None and code_version(plain)["git_dirty"] is None


def _rollout_and_update(tmp_path, overrides, seed=0, learn=True):
    """One rollout, then one PPO update (with ``learn=False`` at lr 0, so the update's steps change
    nothing and what its ratio sees comes from the forward alone). Returns the stats and trainer."""
    cfg = build_config(None, [*overrides, f"train.seed={seed}"])
    trainer = Trainer(cfg, tmp_path)
    trainer.collect()
    if not learn:
        for group in trainer.optimizer.param_groups:
            group["lr"] = 0.0
    torch.manual_seed(seed)
    return trainer.update_policy(), trainer


WHOLE_ROLLOUT = ["ppo.rollout_length=48", "ppo.sequence_length=48", "ppo.epochs=2"]


def test_recompute_old_policy_starts_memos_ratio_at_one(tmp_path, tiny):
    """Memo draws its training segment length at random, so replaying the rollout in train mode
    does not reproduce the rollout's log-probs: PPO's ratio is off before any learning. With
    ``ppo.recompute_old_policy`` one draw is held for the whole update and the old policy is
    recomputed under it: with unchanged weights (lr 0) the ratio is 1 in every minibatch."""
    from memo_rl.memory.memo import MemoCore
    from memo_rl.ppo.update import replay_log_probs_and_values

    memo = [*tiny, "memory.core=memo", *TRANSFORMER, *WHOLE_ROLLOUT]
    _, trainer = _rollout_and_update(tmp_path / "rollout", memo, learn=False)  # weights are the rollout's
    storage, model = trainer.storage, trainer.update_model
    model.eval()
    torch.testing.assert_close(replay_log_probs_and_values(model, storage, 2)[0], storage.log_probs,
                               atol=1e-6, rtol=0)  # fixed segments replay the rollout
    model.train()
    torch.manual_seed(0)
    random_segments = replay_log_probs_and_values(model, storage, 2)[0]
    assert (random_segments - storage.log_probs).abs().max() > 1e-5  # float noise is ~1e-7
    (core,) = [m for m in model.modules() if isinstance(m, MemoCore)]
    with core.fixed_training_draws():
        first, second = (replay_log_probs_and_values(model, storage, n)[0] for n in (1, 2))
    torch.testing.assert_close(first, second, atol=1e-6, rtol=0)  # one draw, whatever the batching

    stats, _ = _rollout_and_update(tmp_path / "on", [*memo, "ppo.recompute_old_policy=true"], learn=False)
    assert stats.approx_kl < 1e-13 and stats.clip_fraction == 0.0  # without the recompute: 1.6e-10 here


def test_recompute_old_policy_changes_nothing_for_cores_that_replay_exactly(tmp_path, tiny):
    """A GRU's training forward is the rollout's: the flag skips the recompute and the update is
    bit-identical to one without it."""
    params = []
    for name, flag in (("off", "false"), ("on", "true")):
        _, trainer = _rollout_and_update(tmp_path / name, [*tiny, "memory.core=gru", f"ppo.recompute_old_policy={flag}"],
                                         seed=3)
        params.append(torch.cat([p.detach().flatten() for p in trainer.agent.parameters()]))
    assert torch.equal(params[0], params[1])


def test_tracker_splits_first_and_later_episodes_of_a_trial():
    """Lengths and success of a trial's first episode against its episodes 2..LATER_EPISODES+1;
    episodes cut by the trial's end count in neither."""
    import numpy as np

    from memo_rl.train import EpisodeTracker

    tracker = EpisodeTracker(num_envs=2)
    no = np.zeros(2, dtype=bool)

    def step(ended, success, trial_end=no):
        tracker.update(np.zeros(2), np.asarray(ended), np.asarray(trial_end), np.asarray(success, dtype=float))

    # env 0: a failed first episode of 3 steps, then two successes of 1 step, then an episode cut
    # by the trial's end; env 1: one 5-step success, then an episode cut by the trial's end.
    step([False, False], [0, 0])
    step([False, False], [0, 0])
    step([True, False], [0, 0])
    step([True, False], [1, 0])
    step([True, True], [1, 1])
    step([False, True], [0, 0], trial_end=np.array([False, True]))
    assert np.isnan(tracker.summary()["later_episode_length_mean"])  # env 0's count once its trial ends
    step([True, False], [0, 0], trial_end=np.array([True, False]))
    summary = tracker.summary()
    assert summary["first_episode_length_mean"] == 4.0  # (3 + 5) / 2
    assert summary["later_episode_length_mean"] == 1.0
    assert summary["first_episode_success_rate"] == 0.5
    assert summary["later_episode_success_rate"] == 1.0
    assert summary["success_rate"] == 3 / 6  # every episode that ended, cut ones included

    # both windows hold the episodes of the same newest `trials` trials
    small = EpisodeTracker(num_envs=1, trials=2)
    for trial in range(5):  # trials of 6 one-step episodes: 1 first, 4 later, 1 cut; failures in the first 3 trials
        for episode in range(6):
            small.update(np.zeros(1), np.ones(1, bool), np.array([episode == 5]), np.array([float(trial >= 3)]))
    summary = small.summary()
    assert summary["first_episode_success_rate"] == 1.0  # the last 2 trials' first episodes
    assert summary["later_episode_success_rate"] == 1.0  # their 8 later episodes: the same 2 trials


def test_tracker_first_episodes_are_not_only_the_slowest_of_a_trial():
    """Trials start together in every env, so a trial's first episodes finish in order of their
    length. The first-episode figures must cover all of them, not the last (slowest) to finish."""
    import numpy as np

    from memo_rl.train import EpisodeTracker

    N, trial_length = 8, 40
    tracker = EpisodeTracker(num_envs=N, window=8)  # windows of recent episodes smaller than a trial's worth
    lengths = np.arange(1, N + 1) * 3  # env n: first episode of 3(n + 1) steps, a success if shorter than 12
    for t in range(1, trial_length + 1):
        # the first episode, then 5-step episodes, the last one cut by the trial's end
        ended = (t == lengths) | ((t > lengths) & ((t - lengths) % 5 == 0)) | (t == trial_length)
        success = np.where(t == lengths, (lengths < 12).astype(float), 1.0)
        tracker.update(np.zeros(N), ended, np.full(N, t == trial_length), success)
        if t < trial_length:
            assert np.isnan(tracker.summary()["first_episode_length_mean"])  # nothing before the trial ends
    summary = tracker.summary()
    assert summary["first_episode_length_mean"] == lengths.mean() == 13.5
    assert summary["first_episode_success_rate"] == 3 / 8
    assert summary["later_episode_length_mean"] == 5.0 and summary["later_episode_success_rate"] == 1.0


def test_weight_decay_is_decoupled_and_zero_is_plain_adam(tmp_path, tiny):
    """``ppo.weight_decay`` shrinks every weight by ``lr x weight_decay`` per optimizer step, apart
    from the gradient step (AdamW's decay). With gradients clipped to nothing, one update of
    2 epochs x 2 minibatches leaves exactly the decay: every weight times (1 - 0.1 x 0.5) ** 4."""
    settle = [*tiny, "memory.core=gru", "ppo.lr=0.1", "ppo.lr_schedule=constant", "ppo.max_grad_norm=1e-12",
              "ppo.epochs=2", "ppo.num_minibatches=2"]
    _, still = _rollout_and_update(tmp_path / "still", settle)
    _, decayed = _rollout_and_update(tmp_path / "decayed", [*settle, "ppo.weight_decay=0.5"])
    for (name, p_still), p_decayed in zip(still.agent.named_parameters(), decayed.agent.parameters()):
        torch.testing.assert_close(p_decayed, p_still * 0.95**4, atol=1e-6, rtol=1e-5, msg=name)
    assert any(p.abs().max() > 0.1 for p in still.agent.parameters())  # the factor is visible

    plain, decay_zero = (
        _rollout_and_update(tmp_path / name, [*tiny, "memory.core=gru", *extra], seed=2)[1]
        for name, extra in (("plain", []), ("zero", ["ppo.weight_decay=0"]))
    )
    for p, q in zip(plain.agent.parameters(), decay_zero.agent.parameters()):
        assert torch.equal(p, q)
