"""HCAM: the top-k chunk read against brute force, and the ``hcam`` core's contracts."""

import pytest
import torch

from memo_rl.memory import HCAMRead, build_memory_core

D, HEADS, C = 16, 2, 4


def brute_force_read(read: HCAMRead, h: torch.Tensor, memory: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
    """Query by query, chunk by chunk: score every valid chunk, keep the k best, attend inside each."""
    N, Q, d = h.shape
    out = torch.zeros(N, Q, d)
    kv, keys = read.prepare(memory)
    scores = read.chunk_scores(h, keys, valid)
    for n in range(N):
        for q in range(Q):
            candidates = [m for m in range(memory.shape[1]) if valid[n, m]]
            if not candidates:
                continue
            best = sorted(candidates, key=lambda m: -float(scores[n, q, m]))[:k]
            weights = torch.softmax(torch.stack([scores[n, q, m] for m in best]), dim=0)
            for w, m in zip(weights, best):
                inside = read.attend_within(h[n : n + 1, q : q + 1], kv[n, m].view(1, 1, 1, C, 2 * d))
                out[n, q] += w * inside.view(d)
    return read.out(out)


@torch.no_grad()
def _brute(read, h, memory, valid, k):
    return brute_force_read(read, h, memory, valid, k)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_top_k_read_matches_brute_force(k):
    torch.manual_seed(0)
    read = HCAMRead(D, HEADS, top_k=k, chunk_size=C)
    for p in read.parameters():
        torch.nn.init.normal_(p, std=0.3)
    h, memory = torch.randn(3, 5, D), torch.randn(3, 6, C, D)
    valid = torch.ones(3, 6, dtype=torch.bool)
    valid[1, 4:] = False  # env 1 holds 4 chunks
    valid[2] = False  # env 2 holds none: zero update
    valid[2, 0] = True if k == 1 else False
    torch.testing.assert_close(read(h, *read.prepare(memory), valid), _brute(read, h, memory, valid, k), atol=1e-5, rtol=1e-5)
    if k > 1:
        assert torch.equal(read(h, *read.prepare(memory), valid)[2], torch.zeros(5, D))


@pytest.mark.parametrize("queries", [1, 2, 4])
def test_many_chunks_read_through_the_union_of_the_queries_choices_matches_brute_force(queries):
    """M far above k: one query reads its own k chunks; several read the union of their choices."""
    torch.manual_seed(2)
    read = HCAMRead(D, HEADS, top_k=2, chunk_size=C)
    for p in read.parameters():
        torch.nn.init.normal_(p, std=0.3)
    h, memory = torch.randn(3, queries, D), torch.randn(3, 12, C, D)
    valid = torch.ones(3, 12, dtype=torch.bool)
    valid[1, 7:] = False
    valid[2, 1:] = False  # one valid chunk: the second choice is invalid and weighs 0
    expected = _brute(read, h, memory, valid, 2)
    torch.testing.assert_close(read(h, *read.prepare(memory), valid), expected, atol=1e-5, rtol=1e-5)


def test_reading_all_chunks_equals_exhaustive_weighted_chunk_attention():
    torch.manual_seed(1)
    M = 5
    read = HCAMRead(D, HEADS, top_k=M, chunk_size=C)
    for p in read.parameters():
        torch.nn.init.normal_(p, std=0.3)
    h, memory = torch.randn(2, 3, D), torch.randn(2, M, C, D)
    valid = torch.ones(2, M, dtype=torch.bool)
    kv, keys = read.prepare(memory)
    scores = read.chunk_scores(h, keys, valid)  # [N, Q, M]
    every = read.attend_within(h, kv.unsqueeze(1).expand(2, 3, M, C, 2 * D))  # [N, Q, M, d]
    exhaustive = read.out((scores.softmax(-1).unsqueeze(-1) * every).sum(2))
    torch.testing.assert_close(read(h, kv, keys, valid), exhaustive, atol=1e-5, rtol=1e-5)


def make_core(**options):
    torch.manual_seed(0)
    core = build_memory_core("hcam", D, chunk_size=C, top_k=2, n_layers=2, n_heads=HEADS, **options)
    for read in core.reads:  # zero-initialised position table: give the read some signal
        torch.nn.init.normal_(read.chunk_pos, std=0.3)
    return core.eval()


def test_step_and_sequence_agree_across_chunks_and_resets():
    core = make_core()
    T, N = 23, 3
    x = torch.randn(T, N, D)
    resets = torch.zeros(T, N, dtype=torch.bool)
    resets[0] = True
    resets[13, 1] = True
    with torch.no_grad():
        y_seq, s_seq = core.forward_sequence(x, core.initial_state(N), resets)
        state, ys = core.initial_state(N), []
        for t in range(T):
            y, state = core.step(x[t], state, resets[t])
            ys.append(y)
        # the same steps fed in uneven slices through forward_sequence
        state2, parts = core.initial_state(N), []
        for a, b in [(0, 5), (5, 6), (6, 17), (17, 23)]:
            y, state2 = core.forward_sequence(x[a:b], state2, resets[a:b])
            parts.append(y)
    torch.testing.assert_close(torch.stack(ys), y_seq, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(torch.cat(parts), y_seq, atol=1e-4, rtol=1e-4)
    assert s_seq.memory.valid.sum(1).tolist() == [5, 2, 5]  # 23 steps = 5 chunks + 3; env 1 restarted at 13
    assert core.cached_tokens(s_seq) == 23


def test_causal_and_no_gradient_reaches_stored_chunks():
    core = make_core().train()
    T, N = 12, 2
    x = torch.randn(T, N, D, requires_grad=True)
    y, _ = core.forward_sequence(x, core.initial_state(N), None)
    # causality: step 5's output does not depend on later inputs
    (grad,) = torch.autograd.grad(y[5].sum(), x, retain_graph=True)
    assert grad[6:].abs().max() == 0 and grad[5].abs().max() > 0
    # step 9 (chunk 2) sees chunks 0 and 1 only through stored, detached contents
    (grad,) = torch.autograd.grad(y[9].sum(), x)
    assert grad[:8].abs().max() == 0 and grad[8:10].abs().max() > 0
    # ... but it does read them: changing chunk 0 changes step 9's output
    with torch.no_grad():
        x2 = x.detach().clone()
        x2[0:4] += 1.0
        y2, _ = core.eval().forward_sequence(x2, core.initial_state(N), None)
        y1, _ = core.forward_sequence(x.detach(), core.initial_state(N), None)
    assert (y2[9] - y1[9]).abs().max() > 1e-4


def test_chunk_grad_lets_later_reads_train_what_earlier_steps_stored():
    core = make_core(chunk_grad=True).train()
    x = torch.randn(12, 2, D, requires_grad=True)
    y, _ = core.forward_sequence(x, core.initial_state(2), None)
    (grad,) = torch.autograd.grad(y[9].sum(), x)
    assert grad[:8].abs().max() > 0 and grad[10:].abs().max() == 0  # reaches the stored chunks, still causal
    with torch.no_grad():  # the same function as the detached core: only the gradient differs
        detached = make_core().train()
        detached.load_state_dict(core.state_dict())
        torch.testing.assert_close(detached.forward_sequence(x, detached.initial_state(2), None)[0], y)


def test_resets_isolate_trials():
    core = make_core()
    x = torch.randn(10, 2, D)
    with torch.no_grad():
        _, state = core.forward_sequence(x, core.initial_state(2), None)
        fresh, _ = core.forward_sequence(x[:6], core.initial_state(2), None)
        resets = torch.zeros(6, 2, dtype=torch.bool)
        resets[0] = True
        after_reset, _ = core.forward_sequence(x[:6], state, resets)
    torch.testing.assert_close(after_reset, fresh, atol=1e-5, rtol=1e-5)


def test_window_keeps_the_newest_chunks():
    core = make_core(window=2)
    with torch.no_grad():
        _, state = core.forward_sequence(torch.randn(30, 2, D), core.initial_state(2), None)
    assert state.memory.index[state.memory.valid].view(2, -1).tolist() == [[5, 6], [5, 6]]
    assert core.cached_tokens(state) == 2 * C + 2
    synthetic = core.synthetic_state(2, 30)
    assert synthetic.memory.index[synthetic.memory.valid].view(2, -1).tolist() == [[5, 6], [5, 6]]
    assert core.cached_tokens(synthetic) == 2 * C + 2
    assert synthetic.memory.kv.shape[2] == state.memory.kv.shape[2]  # same allocated columns as stepping there


def test_chunks_are_appended_in_place_without_changing_earlier_states():
    """Rollout appends a chunk into a free column of a tensor earlier states share; what an earlier
    state reads (and the output of stepping from it) must not change."""
    from memo_rl.memory.hcam import chunk_capacity

    core = make_core()
    x = torch.randn(40, 2, D)
    with torch.no_grad():
        _, snapshot = core.forward_sequence(x[:9], core.initial_state(2), None)  # 2 chunks in 8 columns
        first, _ = core.forward_sequence(x[9:20], snapshot, None)
        _, later = core.forward_sequence(x[9:40], snapshot, None)  # writes chunks 3.. past the capacity
        again, _ = core.forward_sequence(x[9:20], snapshot, None)
    torch.testing.assert_close(again, first, rtol=0, atol=0)
    assert snapshot.memory.valid.sum(1).tolist() == [2, 2] and later.memory.valid.sum(1).tolist() == [10, 10]
    assert later.memory.kv.shape[2] == chunk_capacity(10) == 10 and [chunk_capacity(n) for n in (1, 9, 11)] == [8, 10, 13]


@pytest.mark.parametrize("options,message", [({"chunk_size": 0}, "chunk_size"), ({"top_k": 0}, "top_k"),
                                              ({"window": 0}, "window")])
def test_bad_options_are_rejected(options, message):
    with pytest.raises(ValueError, match=message):
        build_memory_core("hcam", D, n_heads=HEADS, **options)


def test_chunk_selection_script_reads_a_trained_run(tmp_path):
    """experiments/hcam_chunk_selection.py on a tiny hcam run (docs/results.md, sweeps section)."""
    from conftest import TINY, run_experiment

    from memo_rl.cli import main

    run_dir = tmp_path / "run"
    assert main(["train", *TINY, "memory.core=hcam", "memory.n_layers=2", "memory.n_heads=2", "memory.chunk_size=5",
                 "memory.top_k=2", f"run.dir={run_dir}"]) == 0
    done = run_experiment("hcam_chunk_selection.py", str(run_dir), "--envs", "8", "--steps", "200")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "8 envs x 200 steps; chunks of 5, top-2" in lines[0]
    assert [line.split(":")[0] for line in lines[1:]] == ["  layer 0", "  layer 1"]
    assert all("(chance " in line and "(uniform 0.20)" in line for line in lines[1:])
