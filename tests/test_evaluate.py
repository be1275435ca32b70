"""``memo-rl eval``: streaming bounds, binned metrics, folder evaluation, TensorBoard, bad input."""

import csv
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY

from memo_rl.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from memo_rl.cli import main
from memo_rl.config import build_config
from memo_rl.evaluate import describe
from memo_rl.probe import AttentionMap

MEMO = ["memory.core=memo", "memory.n_layers=1", "memory.n_heads=2", "memory.segment_length=8", "memory.summary_length=2"]
FCT = ["memory.core=fct", "memory.n_layers=1", "memory.n_heads=2"]
# A quick evaluation: 4 trials, bins of 40 steps (the training trial length), a short probe.
QUICK = ["eval.trials=4", "eval.bin_steps=40", "eval.video_steps=5", "eval.attention_steps=60"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny trained runs (checkpoints at steps 128, 256, 384): memo and fct on Dark Key-to-Door,
    gru on Dark Room."""
    root = tmp_path_factory.mktemp("runs")
    for name, extra in (("memo", MEMO), ("fct", FCT), ("gru_room", ["memory.core=gru", "env.id=memo_rl/DarkRoom-v0"])):
        assert main(["train", *TINY, *extra, f"run.dir={root / name}"]) == 0
    return root


def results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def test_streaming_memo_keeps_tokens_bounded_on_trials_longer_than_training(runs, tmp_path):
    out = tmp_path / "stream"
    checkpoint = runs / "memo" / "checkpoints" / "ckpt_000000000384.pt"
    args = ["eval", str(checkpoint), *QUICK, "eval.streaming=true", "eval.window=2", "eval.trial_steps=160",
            f"eval.output={out}"]
    assert main(args) == 0
    entry = results(out)["checkpoints"][0]
    assert entry["global_step"] == 384 and entry["trial_steps"] == 160
    assert [row["bin"] for row in entry["bins"]] == [1, 2, 3, 4]
    # window of 2 summary blocks of 2 tokens, plus the open segment of at most 8 steps
    assert all(0 < row["cached_tokens"] <= 2 * 2 + 8 for row in entry["bins"])
    assert all(row["memory_bytes"] > 0 and row["step_ms"] > 0 for row in entry["bins"])
    by_bin = np.array(entry["trial_returns_by_bin"])  # [trials, bins]
    assert by_bin.shape == (4, 4)
    np.testing.assert_allclose(by_bin.mean(0), [row["return_mean"] for row in entry["bins"]])
    assert entry["trial_return_mean"] == pytest.approx(by_bin.sum(1).mean())
    with open(out / "bins.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["bin"]) for r in rows] == [1, 2, 3, 4] and float(rows[0]["return_mean"]) == entry["bins"][0]["return_mean"]
    assert (out / "bins.png").stat().st_size > 0 and (out / entry["attention_png"]).stat().st_size > 0


@pytest.mark.parametrize("forget", [False, True])
def test_fixed_buffers_play_the_same_trials_as_core_steps(runs, tmp_path, forget):
    """eval.fixed_buffers=true (StreamingMemoStepper) plays what core.step plays: same returns per
    trial and bin, same tokens held; its memory is the fixed buffer of 2 blocks x 2 tokens + 8 steps."""
    checkpoint = runs / "memo" / "checkpoints" / "ckpt_000000000384.pt"
    common = [*QUICK, "eval.streaming=true", "eval.window=2", "eval.trial_steps=160", f"eval.forget_episodes={forget}",
              "eval.num_envs=2"]  # two rounds: the stepper starts the second with fresh trials
    entries = {}
    for fixed in (False, True):
        out = tmp_path / f"fixed-{fixed}"
        assert main(["eval", str(checkpoint), *common, f"eval.fixed_buffers={fixed}", f"eval.output={out}"]) == 0
        entries[fixed] = results(out)["checkpoints"][0]
    assert entries[True]["trial_returns_by_bin"] == entries[False]["trial_returns_by_bin"]
    assert entries[True]["episodes"] == entries[False]["episodes"] > 0
    for fixed_row, core_row in zip(entries[True]["bins"], entries[False]["bins"]):
        assert fixed_row["cached_tokens"] == core_row["cached_tokens"] <= 2 * 2 + 8
    # per env: k and v of 1 layer x 12 slots x d_model values (fp32), the slot masks and positions, 2 counters
    d_model = load_checkpoint(checkpoint)["config"]["agent"]["d_model"]
    assert entries[True]["bins"][0]["memory_bytes"] == 2 * 12 * d_model * 4 + 12 * (1 + 8) + 2 * 8


def test_without_streaming_memo_memory_grows_with_the_trial(runs, tmp_path):
    out = tmp_path / "full"
    checkpoint = runs / "memo" / "checkpoints" / "ckpt_000000000384.pt"
    assert main(["eval", str(checkpoint), *QUICK, "eval.trial_steps=160", f"eval.output={out}"]) == 0
    tokens = [row["cached_tokens"] for row in results(out)["checkpoints"][0]["bins"]]
    assert tokens == sorted(tokens) and tokens[-1] > 2 * 2 + 8  # 19 blocks of 2 tokens by step 160


def test_streaming_fct_holds_the_newest_window_steps(runs, tmp_path):
    out = tmp_path / "fct"
    checkpoint = runs / "fct" / "checkpoints" / "ckpt_000000000384.pt"
    args = ["eval", str(checkpoint), *QUICK, "eval.streaming=true", "eval.window=12", "eval.trial_steps=120",
            f"eval.output={out}"]
    assert main(args) == 0
    assert [row["cached_tokens"] for row in results(out)["checkpoints"][0]["bins"]] == [12, 12, 12]


def test_a_token_budget_bounds_memo_and_fct_alike_and_plots_them_together(runs, tmp_path):
    """eval.token_budget=12: memo keeps (12 - 8) / 2 = 2 summary blocks, fct 12 steps."""
    args = ["eval", str(runs / "memo" / "checkpoints" / "ckpt_000000000384.pt"),
            str(runs / "fct" / "checkpoints" / "ckpt_000000000384.pt"), *QUICK, "eval.streaming=true",
            "eval.token_budget=12", "eval.trial_steps=120", f"eval.plot={tmp_path / 'both.png'}"]
    assert main(args) == 0
    for name, window, held in (("memo", 2, 2 * 2 + 7), ("fct", 12, 12)):  # memo writes a summary at step 8
        data = results(runs / name / "eval" / "stream-b12-t120-sampled")
        assert data["settings"]["memory_window"] == window
        assert max(row["cached_tokens"] for row in data["checkpoints"][0]["bins"]) == held
    assert (tmp_path / "both.png").stat().st_size > 0


def test_same_seed_same_results_greedy_and_sampled(runs, tmp_path):
    checkpoint = runs / "memo" / "checkpoints" / "ckpt_000000000256.pt"
    returns = {}
    for name, extra in (("a", []), ("b", []), ("greedy", ["eval.deterministic=true"]), ("seed", ["eval.seed=7"])):
        assert main(["eval", str(checkpoint), *QUICK, *extra, f"eval.output={tmp_path / name}"]) == 0
        returns[name] = results(tmp_path / name)["checkpoints"][0]["trial_returns_by_bin"]
    assert returns["a"] == returns["b"]
    assert returns["seed"] != returns["a"]
    assert results(tmp_path / "greedy")["settings"]["deterministic"] is True


def test_episodes_by_index_splits_trials_into_their_episodes(runs, tmp_path):
    """Dark Room has fixed 10-step episodes: a 100-step trial holds 9 whole episodes and a 10th
    cut by the trial's end (left out). Slots 1..7 get one episode per trial, the 8th pools the
    8th and 9th."""
    out = tmp_path / "by_episode"
    checkpoint = runs / "gru_room" / "checkpoints" / "ckpt_000000000384.pt"
    assert main(["eval", str(checkpoint), *QUICK, "eval.env_kwargs={trial_length: 100}", f"eval.output={out}"]) == 0
    entry = results(out)["checkpoints"][0]
    rows = entry["episodes_by_index"]
    assert [row["episode"] for row in rows] == list(range(1, 9))
    assert [row["episodes"] for row in rows] == [4.0] * 7 + [8.0]
    assert [row["pools_later"] for row in rows] == [False] * 7 + [True]
    assert all(row["episode_length"] == 10.0 for row in rows)
    # the whole episodes' returns are the trial returns of their steps (bins of 40: steps 0-89 are whole)
    by_bin = np.array(entry["trial_returns_by_bin"])  # [trials, bins]
    whole_returns = sum(row["return_mean"] * row["episodes"] for row in rows)
    assert by_bin[:, :2].sum() <= whole_returns + 1e-6 <= by_bin.sum() + 1e-6
    success = " ".join(f"{row['success_rate']:.2f}" for row in rows)
    assert f"success by episode of the trial: {success} |" in describe(entry)


@pytest.mark.parametrize("forget", [False, True])
def test_forget_episodes_starts_every_episode_as_a_trial(runs, tmp_path, monkeypatch, forget):
    """Dark Room's episodes last 10 steps. By default the memory is cleared only at the trial's
    first step; with eval.forget_episodes at every episode's first step, which then also sees no
    previous action or reward, as a trial's first step does."""
    from agents import ActorCritic

    seen = []
    step = ActorCritic.step

    def spy(self, inputs, state, resets):
        seen.append((resets[0].item(), inputs.prev_actions[0].item(), inputs.prev_rewards[0].item()))
        return step(self, inputs, state, resets)

    monkeypatch.setattr(ActorCritic, "step", spy)
    checkpoint = runs / "gru_room" / "checkpoints" / "ckpt_000000000384.pt"
    out = tmp_path / f"forget_{forget}"
    assert main(["eval", str(checkpoint), "eval.trials=1", "eval.bin_steps=40", "eval.video_steps=0",
                 "eval.attention_steps=0", "eval.tensorboard=false", "eval.env_kwargs={trial_length: 50}",
                 f"eval.forget_episodes={str(forget).lower()}", f"eval.output={out}"]) == 0
    played = seen[:50]  # the trial's steps (a probe may play more after it)
    starts = [t for t, (reset, _, _) in enumerate(played) if reset]
    assert starts == ([0, 10, 20, 30, 40] if forget else [0])
    assert all(played[t][1] == -1 and played[t][2] == 0.0 for t in starts)
    assert all(played[t][1] >= 0 for t in range(50) if t not in starts)
    assert results(out)["settings"]["forget_episodes"] is forget
    if forget:
        assert out.exists() and "-forget" not in out.name  # an explicit output keeps its name
        assert build_config(None, ["eval.forget_episodes=true"]).eval.default_tag.endswith("-forget")


def test_episodes_by_index_reports_success_where_the_env_does(runs, tmp_path):
    out = tmp_path / "by_episode_ktd"
    checkpoint = runs / "memo" / "checkpoints" / "ckpt_000000000384.pt"
    assert main(["eval", str(checkpoint), *QUICK, f"eval.output={out}"]) == 0
    entry = results(out)["checkpoints"][0]
    rows = entry["episodes_by_index"]
    whole = sum(row["episodes"] for row in rows)
    all_episodes = sum(row["episodes"] for row in entry["bins"])
    assert rows and all(0.0 <= row["success_rate"] <= 1.0 for row in rows)
    assert all_episodes - 4 <= whole <= all_episodes  # at most one episode per trial is cut by its end


def test_trials_run_in_rounds_of_num_envs(runs, tmp_path):
    checkpoint = runs / "memo" / "checkpoints" / "ckpt_000000000256.pt"
    assert main(["eval", str(checkpoint), *QUICK, "eval.trials=5", "eval.num_envs=2", f"eval.output={tmp_path / 'r'}"]) == 0
    assert np.array(results(tmp_path / "r")["checkpoints"][0]["trial_returns_by_bin"]).shape == (5, 1)


def test_folder_evaluation_skips_corrupt_resumes_and_picks_up_new_checkpoints(runs, tmp_path, capsys):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    for step in (128, 256):
        shutil.copy(runs / "memo" / "checkpoints" / f"ckpt_{step:012d}.pt", folder)
    (folder / "ckpt_000000000200.pt").write_bytes(b"half-written")
    out = tmp_path / "out"
    args = ["eval", str(folder), *QUICK, f"eval.output={out}"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "skipping" in err and "ckpt_000000000200.pt" in err
    data = results(out)
    assert [c["global_step"] for c in data["checkpoints"]] == [128, 256]
    assert [f["name"] for f in data["failed"]] == ["ckpt_000000000200.pt"]

    before = (out / "results.json").read_text()
    assert main(args) == 0  # nothing new: no evaluation, no new report
    captured = capsys.readouterr()
    assert "0 evaluated now" in captured.out and "skipping" not in captured.err
    assert (out / "results.json").read_text() == before

    payload = load_checkpoint(runs / "memo" / "checkpoints" / "ckpt_000000000384.pt")
    save_checkpoint(folder / "ckpt_000000000384.pt", payload)
    assert main(args) == 0
    assert [c["global_step"] for c in results(out)["checkpoints"]] == [128, 256, 384]


def test_follow_picks_up_a_checkpoint_written_while_evaluating(runs, tmp_path):
    folder = tmp_path / "live"
    folder.mkdir()
    shutil.copy(runs / "memo" / "checkpoints" / "ckpt_000000000128.pt", folder)
    payload = load_checkpoint(runs / "memo" / "checkpoints" / "ckpt_000000000256.pt")
    writer = threading.Timer(1.0, lambda: save_checkpoint(folder / "ckpt_000000000256.pt", payload))
    writer.start()
    out = tmp_path / "out"
    started = time.monotonic()
    args = ["eval", str(folder), *QUICK, "eval.follow=true", "eval.poll_seconds=0.2", "eval.follow_timeout=4",
            f"eval.output={out}"]
    assert main(args) == 0
    writer.join()
    assert [c["global_step"] for c in results(out)["checkpoints"]] == [128, 256]
    assert time.monotonic() - started < 60


def test_a_checkpoint_of_another_env_in_the_folder_is_reported_and_skipped(runs, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(runs / "memo" / "checkpoints" / "ckpt_000000000128.pt", folder)
    shutil.copy(runs / "gru_room" / "checkpoints" / "ckpt_000000000256.pt", folder)
    assert main(["eval", str(folder), *QUICK, f"eval.output={tmp_path / 'out'}"]) == 0
    assert "memo_rl/DarkRoom-v0" in capsys.readouterr().err
    data = results(tmp_path / "out")
    assert [c["global_step"] for c in data["checkpoints"]] == [128]
    assert [f["name"] for f in data["failed"]] == ["ckpt_000000000256.pt"]


def test_tensorboard_holds_eval_scalars_video_and_attention(runs, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    assert main(["eval", str(runs / "memo"), *QUICK, f"eval.output={out}"]) == 0
    events = EventAccumulator(str(out), size_guidance={"images": 0, "scalars": 0}).Reload()
    tags = events.Tags()
    assert {"eval/attention", "eval/video"} <= set(tags["images"])
    assert [e.step for e in events.Scalars("eval/trial_return_mean")] == [128, 256, 384]
    assert "eval/bin01/return_mean" in tags["scalars"]
    assert events.Images("eval/video")[0].encoded_image_string[:6] == b"GIF89a"
    assert events.Images("eval/attention")[0].encoded_image_string[:4] == b"\x89PNG"


def test_training_logs_attention_maps_for_attention_cores(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    assert main(["train", *TINY, *MEMO, "run.attention_interval=3", f"run.dir={run_dir}"]) == 0
    images = EventAccumulator(str(run_dir), size_guidance={"images": 0}).Reload().Images("memory/attention")
    assert [image.step for image in images] == [192, 384]


def test_attention_map_places_summary_weight_on_its_whole_segment():
    attention = AttentionMap(steps=6)
    attention.add(np.array([1.0]), np.array([[0, 1]]))  # step 0 attends to itself
    # step 1: a summary of steps 0-3 gets 0.25, the raw step 1 gets 0.75
    attention.add(np.array([0.25, 0.75]), np.array([[0, 4], [1, 2]]))
    np.testing.assert_allclose(attention.weights, [[1.0, 0.0], [0.25, 1.0]])


@pytest.mark.parametrize("core,trial", [("memo", 17), ("fct", 9)])
def test_attention_of_the_cores_maps_keys_to_the_steps_they_stand_for(core, trial):
    """Every step's attention is a distribution over keys standing for steps up to its own."""
    from memo_rl.memory import build_memory_core, record_attention

    options = {"segment_length": 4, "summary_length": 2} if core == "memo" else {}
    model = build_memory_core(core, 16, n_layers=2, n_heads=2, **options).eval()
    torch.manual_seed(0)
    x = torch.randn(trial, 3, 16)
    state, plain_state = model.initial_state(3), model.initial_state(3)
    for t in range(trial):
        plain, plain_state = model.step(x[t], plain_state, None)
        with record_attention(model) as log:
            y, next_state = model.step(x[t], state, None)
        torch.testing.assert_close(y, plain)  # recording attention changes nothing
        spans = model.key_step_spans(log[0].key_pos, state)  # [N, K, 2]
        weights, valid = log[0].weights[:, -1], log[0].key_valid  # [N, K]
        torch.testing.assert_close(weights.sum(-1), torch.ones(3))
        assert bool((weights[~valid] == 0).all())
        assert bool((spans[valid][:, 1] <= t + 1).all()) and bool((spans[valid][:, 0] >= 0).all())
        assert int(spans[valid][:, 1].max()) == t + 1  # the step itself is a key
        state = next_state
    if core == "memo":  # step 16: 4 summary blocks of segments 0-3, each standing for 4 steps
        summary_spans = spans[0][log[0].key_pos[0] < 8].tolist()
        assert summary_spans == [[0, 4]] * 2 + [[4, 8]] * 2 + [[8, 12]] * 2 + [[12, 16]] * 2


@pytest.mark.parametrize(
    "args,message",
    [
        (["{empty}"], "no checkpoints in"),
        (["{missing}"], "no such checkpoint or folder"),
        (["{memo}", "ppo.lr=1"], "is not an eval option"),
        (["{gru}", "eval.streaming=true", "eval.window=4"], "eval.window does not apply to memory.core=gru"),
        (["{memo}", "eval.streaming=true"], "needs eval.window=W or eval.token_budget=B"),
        (["{memo}", "eval.streaming=true", "eval.token_budget=9"], "eval.token_budget=9 is too small for memory.core=memo"),
        (["{memo}", "eval.streaming=true", "eval.token_budget=20", "eval.window=2"], "not both"),
        (["{memo}", "eval.window=4"], "pass eval.streaming=true"),
        (["{memo}", "eval.fixed_buffers=true"], "fixed-size buffers, got no eval.window or eval.token_budget"),
        (["{gru}", "eval.fixed_buffers=true"], "got memory.core=gru (it steps memory.core=memo only)"),
        (["{memo}", "eval.env_id=memo_rl/DarkRoom-v0"], "does not fit the agent for env 'memo_rl/DarkRoom-v0'"),
        (["{old}"], "has checkpoint format 0; this memo-rl reads format 1"),
        (["{memo}", "eval.trials=0"], "bad value 0 for 'eval.trials'"),
        (["{memo}", "eval.windw=3"], "eval.windw"),
    ],
)
def test_bad_input_is_one_clear_line(runs, tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    old = load_checkpoint(runs / "memo" / "checkpoints" / "ckpt_000000000128.pt")
    torch.save({**old, "format": 0}, tmp_path / "ckpt_000000000128.pt")
    paths = {
        "empty": tmp_path / "empty", "missing": tmp_path / "nope", "old": tmp_path / "ckpt_000000000128.pt",
        "memo": runs / "memo" / "checkpoints" / "ckpt_000000000128.pt",
        "gru": runs / "gru_room" / "checkpoints" / "ckpt_000000000128.pt",
    }
    args = [a.format(**paths) for a in args]
    assert main(["eval", *args, f"eval.output={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out" / "results.json").exists()


def test_eval_settings_cannot_mix_in_one_folder(runs, tmp_path, capsys):
    checkpoint = runs / "memo" / "checkpoints" / "ckpt_000000000128.pt"
    out = tmp_path / "out"
    assert main(["eval", str(checkpoint), *QUICK, f"eval.output={out}"]) == 0
    before = (out / "results.json").read_text()
    assert main(["eval", str(checkpoint), *QUICK, "eval.seed=3", f"eval.output={out}"]) == 2
    assert "pass eval.tag=NAME" in capsys.readouterr().err
    assert (out / "results.json").read_text() == before


def test_default_output_is_under_the_run_and_named_by_the_settings(runs):
    cfg = build_config(None, ["eval.streaming=true", "eval.window=8", "eval.trial_steps=4000"])
    assert cfg.eval.default_tag == "stream-w8-t4000-sampled"
    run_copy = runs / "memo_copy"
    shutil.copytree(runs / "memo", run_copy)
    assert main(["eval", str(run_copy), *QUICK]) == 0
    assert [c["global_step"] for c in results(run_copy / "eval" / "full-ttrain-sampled")["checkpoints"]] == [128, 256, 384]
    assert list_checkpoints(run_copy / "checkpoints")  # checkpoints untouched


def test_several_paths_get_one_comparison_plot(runs, tmp_path):
    plot = tmp_path / "compare.png"
    args = ["eval", str(runs / "memo" / "checkpoints" / "ckpt_000000000384.pt"),
            str(runs / "fct" / "checkpoints" / "ckpt_000000000384.pt"), *QUICK, "eval.tag=cmp", f"eval.plot={plot}"]
    assert main(args) == 0
    assert plot.stat().st_size > 0
    assert (runs / "memo" / "eval" / "cmp" / "results.json").exists() and (runs / "fct" / "eval" / "cmp" / "results.json").exists()


def test_dark_key_to_door_script_plays_chosen_checkpoints(tmp_path):
    """experiments/dark_key_to_door_memory.py --plot-only --trials N --at-steps S: a row per core for
    the newest checkpoint at or before S and one for the final checkpoint (docs/results.md)."""
    from conftest import TINY, run_experiment

    from memo_rl.cli import main

    for core in ("gru", "none"):  # checkpoints every 2 updates of 4 envs x 16 steps: 128, 256, 384
        assert main(["train", f"dark_key_to_door_{core}", *TINY, f"run.dir={tmp_path / f'{core}-s0'}"]) == 0
    done = run_experiment("dark_key_to_door_memory.py", "--plot-only", "--root", str(tmp_path), "--trials", "8",
                          "--at-steps", "200", "--output", str(tmp_path / "curves.png"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    table = done.stdout.split("Checkpoints, 8 fresh trials each (sampled actions):")[1]  # after the curves' table
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith(("| gru", "| none"))]
    assert [(cells[0], cells[1], cells[2]) for cells in rows] == [
        ("| gru", "0", "128"), ("| gru", "0", "384"), ("| none", "0", "128"), ("| none", "0", "384")
    ]
    assert all(0.0 <= float(cells[3].split(" +- ")[0]) <= 8.0 for cells in rows)  # a 40-step trial returns <= 2 x 4
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_compare_evals_plots_success_by_episode_with_a_binomial_band(runs, tmp_path):
    """experiments/compare_evals.py: two evaluations with different settings (memory carried vs
    eval.forget_episodes) in one plot, their success by episode printed; the band is 1.96 binomial
    standard errors."""
    from conftest import run_experiment

    from memo_rl.plots import _episode_success

    checkpoint = runs / "memo" / "checkpoints" / "ckpt_000000000384.pt"
    for forget in ("false", "true"):
        assert main(["eval", str(checkpoint), *QUICK, f"eval.forget_episodes={forget}",
                     f"eval.output={tmp_path / forget}"]) == 0
    done = run_experiment("compare_evals.py", "--eval", f"carried={tmp_path / 'false' / 'results.json'}",
                          "--eval", f"cleared={tmp_path / 'true' / 'results.json'}@ckpt_000000000384.pt",
                          "--episodes-only", "--output", str(tmp_path / "episodes.png"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    for name, label in (("false", "carried"), ("true", "cleared")):
        rows = results(tmp_path / name)["checkpoints"][0]["episodes_by_index"]
        success = " ".join(f"{row['success_rate']:.3f}" for row in rows)
        assert done.stdout.split(f"{label}: ")[1].splitlines()[1] == f"  success by episode {success}"
    assert (tmp_path / "episodes.png").stat().st_size > 0
    bad = run_experiment("compare_evals.py", "--eval", f"x={tmp_path / 'nothing.json'}", "--output",
                         str(tmp_path / "x.png"))
    assert bad.returncode != 0 and "--eval x: cannot read an evaluation from" in bad.stderr

    entry = {"episodes_by_index": [{"episode": 1, "success_rate": 0.5, "episodes": 100.0},
                                   {"episode": 2, "success_rate": float("nan"), "episodes": 0.0}]}
    index, rate, half_width = _episode_success(entry)
    assert index.tolist() == [1.0] and rate.tolist() == [0.5]
    assert half_width[0] == pytest.approx(1.96 * 0.05)
    assert _episode_success({"episodes_by_index": []}) is None
