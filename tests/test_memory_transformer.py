"""Behavioural tests of the attention cores (memo, rmt, fct, trxl) against the memory-core API."""

from __future__ import annotations

import pytest
import torch

import memo_rl.memory.transformer as transformer
from memo_rl.memory import MemoCore, MemoryCore, build_memory_core, cat_states, index_state
from memo_rl.memory.transformer import (
    KVSlots,
    TransformerStack,
    append_along,
    append_slots,
    compact,
    split_attention,
)

torch.set_num_threads(1)

D = 16
SEG, SUM = 8, 2
CASES = {
    "memo": ("memo", dict(segment_length=SEG, summary_length=SUM, n_layers=2, n_heads=2)),
    "memo_w2": ("memo", dict(segment_length=SEG, summary_length=SUM, n_layers=2, n_heads=2, window=2)),
    "memo_hcam": ("memo", dict(segment_length=SEG, summary_length=SUM, n_layers=2, n_heads=2, read="hcam", top_k=2)),
    "memo_hcam_w2": ("memo", dict(segment_length=SEG, summary_length=SUM, n_layers=2, n_heads=2, read="hcam", top_k=2,
                                  window=2)),
    "rmt": ("rmt", dict(segment_length=SEG, summary_length=SUM, n_layers=2, n_heads=2)),
    "fct": ("fct", dict(n_layers=2, n_heads=2)),
    "fct_w10": ("fct", dict(n_layers=2, n_heads=2, window=10)),
    "trxl": ("trxl", dict(n_layers=2, n_heads=2, window=10, segment_length=12)),
}


def make(case: str, train: bool = False) -> MemoryCore:
    torch.manual_seed(0)
    name, options = CASES[case]
    core = build_memory_core(name, D, **options)
    return core.train(train)


def data(T: int, N: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``[T, N, D]`` and resets ``[T, N]``: every env starts at 0, envs reset at different times."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, N, D, generator=g)
    resets = torch.zeros(T, N, dtype=torch.bool)
    resets[0] = True
    for n, t in enumerate([None, 19, 30, 45][:N]):
        if t is not None and t < T:
            resets[t, n] = True
    return x, resets


def run_steps(core: MemoryCore, x, resets, state=None):
    state = core.initial_state(x.shape[1], x.device) if state is None else state
    ys = []
    for t in range(x.shape[0]):
        y, state = core.step(x[t], state, resets[t])
        ys.append(y)
    return torch.stack(ys), state


@pytest.mark.parametrize("case", list(CASES))
@torch.no_grad()
def test_step_matches_forward_sequence_across_segments_and_resets(case):
    core = make(case)
    x, resets = data(60, 4)  # 7+ segments of 8 steps, resets out of phase with the segments
    y_steps, s_steps = run_steps(core, x, resets)
    y_seq, s_seq = core.forward_sequence(x, core.initial_state(4, "cpu"), resets)
    torch.testing.assert_close(y_seq, y_steps, atol=1e-4, rtol=0)
    # forward_sequence in pieces (a cut mid-segment) equals the whole, and the states continue alike
    y_a, s_a = core.forward_sequence(x[:27], core.initial_state(4, "cpu"), resets[:27])
    y_b, s_b = core.forward_sequence(x[27:], s_a, resets[27:])
    torch.testing.assert_close(torch.cat([y_a, y_b]), y_steps, atol=1e-4, rtol=0)
    x_next, no_reset = torch.randn(5, 4, D), torch.zeros(5, 4, dtype=torch.bool)
    for state in (s_seq, s_b):
        y_next, _ = core.forward_sequence(x_next, state, no_reset)
        y_ref, _ = run_steps(core, x_next, no_reset, s_steps)
        torch.testing.assert_close(y_next, y_ref, atol=1e-4, rtol=0)
    assert core.cached_tokens(s_seq) == core.cached_tokens(s_steps) > 0


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("train", [False, True])
def test_causality(case, train):
    """Perturbing the input at t moves no output before t (and does move outputs from t on)."""
    core = make(case, train)
    x, resets = data(40, 2)
    resets[:] = False
    resets[0] = True
    for t in (5, 8, 23):
        torch.manual_seed(7)  # same random segment length in both training forwards
        y, _ = core.forward_sequence(x, core.initial_state(2, "cpu"), resets)
        x2 = x.clone()
        x2[t] += torch.randn(2, D)
        torch.manual_seed(7)
        y2, _ = core.forward_sequence(x2, core.initial_state(2, "cpu"), resets)
        assert torch.equal(y[:t], y2[:t])
        assert not torch.allclose(y[t], y2[t])


@pytest.mark.parametrize("case", list(CASES))
@torch.no_grad()
def test_reset_isolates_trials(case):
    """After a reset an env's outputs equal a fresh core's on the same inputs; other envs are untouched."""
    core = make(case)
    x, _ = data(50, 3)
    resets = torch.zeros(50, 3, dtype=torch.bool)
    resets[0] = True
    resets[21, 1] = True
    y, _ = core.forward_sequence(x, core.initial_state(3, "cpu"), resets)
    fresh, _ = core.forward_sequence(x[21:, 1:2], core.initial_state(1, "cpu"), None)
    torch.testing.assert_close(y[21:, 1:2], fresh, atol=1e-5, rtol=0)
    alone, _ = core.forward_sequence(x[:, ::2], core.initial_state(2, "cpu"), resets[:, ::2])
    torch.testing.assert_close(y[:, ::2], alone, atol=1e-5, rtol=0)


@torch.no_grad()
@pytest.mark.parametrize("case", ["memo", "memo_hcam"])
def test_memo_bottleneck_later_segments_see_raw_steps_only_through_the_summary(case):
    """Changing raw steps of segment 0 moves later outputs only through segment 0's summary:
    with that summary held fixed, outputs after segment 0 do not move at all."""
    core = make(case)
    x, _ = data(40, 2)
    x2 = x.clone()
    x2[2:6] += 3.0 * torch.randn(4, 2, D)  # raw steps inside segment 0 (steps 0-7)

    y, _ = core.forward_sequence(x, core.initial_state(2, "cpu"), None)
    y2_free, _ = core.forward_sequence(x2, core.initial_state(2, "cpu"), None)
    assert (y[SEG:] - y2_free[SEG:]).abs().max() > 1e-5  # information does flow forward

    recorded = []
    original = core.summarize_segment
    core.summarize_segment = lambda *a: recorded.append(original(*a)) or recorded[-1]
    core.forward_sequence(x, core.initial_state(2, "cpu"), None)
    replay = iter(recorded)
    core.summarize_segment = lambda *a: next(replay)  # perturbed run, summaries of the clean run
    y2_fixed, _ = core.forward_sequence(x2, core.initial_state(2, "cpu"), None)
    assert not torch.allclose(y[2:SEG], y2_fixed[2:SEG])  # segment 0 itself does change
    assert torch.equal(y2_fixed[SEG:], y[SEG:])


@pytest.mark.parametrize("case", ["memo", "memo_hcam", "rmt", "fct"])
def test_training_backpropagates_through_every_summary(case):
    """A loss on the last step reaches the first step's input (through all summaries for memo/rmt)."""
    core = make(case, train=True)
    x, _ = data(48, 2)
    x.requires_grad_(True)
    y, _ = core.forward_sequence(x, core.initial_state(2, "cpu"), None)
    y[-1].sum().backward()
    assert x.grad[0].abs().sum() > 0


def test_trxl_stops_gradients_into_the_cache_but_not_the_forward():
    core = make("trxl", train=True)  # window 10, cache detached every 12 steps
    x, _ = data(30, 1)
    x.requires_grad_(True)
    y, _ = core.forward_sequence(x, core.initial_state(1, "cpu"), None)
    y[26].sum().backward()  # step 26 sees steps 16-26; 16-23 sit in the cache detached at step 24
    assert x.grad[24:27].abs().sum() > 0
    assert x.grad[:24].abs().sum() == 0
    with torch.no_grad():
        x2 = x.detach().clone()
        x2[18] += 1.0
        y2, _ = core.forward_sequence(x2, core.initial_state(1, "cpu"), None)
    assert not torch.allclose(y[26], y2[26])  # ... although the cached steps do shape the output


def test_memo_randomizes_segment_length_in_training_only():
    T = 200
    x, _ = data(T, 1)
    lengths = set()
    core = make("memo", train=True)
    core.segment_length = 20
    with torch.no_grad():
        for seed in range(12):
            torch.manual_seed(seed)
            _, state = core.forward_sequence(x, core.initial_state(1, "cpu"), None)
            n_blocks, tail = int(state.n_blocks), int(state.seg_steps)
            lengths.add((T - tail) // n_blocks)
        assert len(lengths) > 2 and all(16 <= s <= 24 for s in lengths)
        core.randomize_segments = False
        _, state = core.forward_sequence(x, core.initial_state(1, "cpu"), None)
        assert int(state.n_blocks) == 10
        core.randomize_segments = True
        core.eval()
        _, state = core.forward_sequence(x, core.initial_state(1, "cpu"), None)
        assert int(state.n_blocks) == 10


@torch.no_grad()
@pytest.mark.parametrize("window,read", [(None, "full"), (3, "full"), (3, "hcam")])
def test_streaming_memo_memory_stays_bounded_over_20000_steps(window, read):
    torch.manual_seed(0)
    seg, summ = 64, 4
    core = MemoCore(8, segment_length=seg, summary_length=summ, n_layers=1, n_heads=1, window=window, read=read).eval()
    state = core.initial_state(2, "cpu")
    x = torch.randn(2, 8)
    tightest = bound_gap = None
    for t in range(20_000):
        _, state = core.step(x, state, torch.tensor([t == 0, t == 0]))
        n_summaries = int(state.n_blocks.max())
        bound = (n_summaries if window is None else window) * summ + seg
        held = core.cached_tokens(state)
        if read == "hcam":  # chunk columns: the newest W blocks plus one to append into
            allocated, room = state.memory.valid.shape[1] * summ + state.segment.width, summ
        else:
            allocated, room = state.memory.width + state.segment.width, 0
        assert held <= bound and allocated <= bound + room, (t, held, allocated, bound)
        bound_gap = bound - held
        tightest = bound_gap if tightest is None else min(tightest, bound_gap)
    assert int(state.n_blocks.max()) == 20_000 // seg
    assert tightest == 1  # the bound is reached up to the step that triggers a summary


@torch.no_grad()
def test_fct_window_bounds_the_cache_and_unbounded_fct_holds_the_trial():
    core = make("fct_w10")
    x, resets = data(40, 2)
    resets[:] = False
    resets[0] = True
    _, state = run_steps(core, x, resets)
    assert core.cached_tokens(state) == 10 and state.cache.width == 10
    full = make("fct")
    _, state = run_steps(full, x, resets)
    assert full.cached_tokens(state) == 40


@torch.no_grad()
def test_states_with_different_cache_widths_concatenate_and_index():
    """Storage snapshots taken at different times have different cache widths; cat pads them."""
    core = make("memo")
    x, resets = data(30, 2)
    _, early = core.forward_sequence(x[:3], core.initial_state(2, "cpu"), resets[:3])
    _, late = core.forward_sequence(x[:29], core.initial_state(2, "cpu"), resets[:29])
    both = cat_states([early, late])
    x_next = torch.randn(4, 4, D)
    y_both, _ = core.forward_sequence(x_next, both, None)
    y_early, _ = core.forward_sequence(x_next[:, :2], early, None)
    y_late, _ = core.forward_sequence(x_next[:, 2:], index_state(both, slice(2, 4)), None)
    y_late_ref, _ = core.forward_sequence(x_next[:, 2:], late, None)
    torch.testing.assert_close(y_both[:, :2], y_early, atol=1e-5, rtol=0)
    torch.testing.assert_close(y_late, y_late_ref, atol=1e-5, rtol=0)


def test_compact_left_packs_valid_slots_per_env():
    k = torch.arange(6.0).view(2, 1, 1, 3, 1).expand(2, 1, 1, 3, 1).clone()  # [N=2, L, H, P=3, dh]
    valid = torch.tensor([[False, True, False], [True, False, True]])
    pos = torch.tensor([[0, 1, 2], [3, 4, 5]])
    out = compact(KVSlots(k, k.clone(), valid, pos))
    assert out.width == 2
    assert out.valid.tolist() == [[True, False], [True, True]]
    assert out.pos[0, 0] == 1 and out.pos[1].tolist() == [3, 5]
    assert out.k[0, 0, 0, 0, 0] == 1 and out.k[1, 0, 0, :, 0].tolist() == [3.0, 5.0]


def test_stack_attends_to_caches_side_by_side_as_to_their_concatenation():
    """Memo passes its summary cache and its open segment's as two parts; slot order is irrelevant."""
    torch.manual_seed(0)
    stack = TransformerStack(D, n_layers=2, n_heads=2)
    a = stack.random_slots(3, torch.arange(0, 5), "cpu")
    b = stack.random_slots(3, torch.arange(5, 9), "cpu")
    b = b._replace(valid=b.valid & torch.tensor([True, False, True, True]))  # a cleared slot stays cleared
    joined = append_slots(a, b.k, b.v, b.valid, b.pos)
    x, positions = torch.randn(3, 2, D), torch.tensor([[9, 10]]).expand(3, 2)
    y_parts, k_parts, _ = stack.run(x, positions, (a, b))
    y_joined, k_joined, _ = stack.run(x, positions, joined)
    torch.testing.assert_close(y_parts, y_joined, atol=1e-6, rtol=0)
    torch.testing.assert_close(k_parts, k_joined, atol=0, rtol=0)
    y_a, _, _ = stack.run(x, positions, a)  # and the second part is really attended to
    assert (y_parts - y_a).abs().max() > 1e-3


def test_append_along_writes_into_spare_room_only_for_the_newest_state():
    """Rollout appends one slot per step without copying the cache; a state that is not the
    buffer's filled prefix (an older snapshot, an env slice) gets a fresh buffer, and no state ever
    sees another's slots."""
    with torch.no_grad():
        states = [torch.zeros(2, 0)]
        for t in range(40):
            states.append(append_along(states[-1], torch.full((2, 1), float(t)), dim=1))
        for t, state in enumerate(states):
            assert state.tolist() == [list(map(float, range(t)))] * 2
        newest = states[-1]
        assert newest._base is states[-2]._base and newest._base.shape[1] < 2 * 40  # grown, amortised
        branch = append_along(states[10], torch.full((2, 1), -1.0), dim=1)  # a snapshot appended to again
        assert branch._base is not newest._base and branch[:, -1].tolist() == [-1.0, -1.0]
        assert newest.tolist() == [list(map(float, range(40)))] * 2  # the rollout's state is intact
        one_env = append_along(newest[:1], torch.full((1, 1), 7.0), dim=1)
        assert one_env._base is not newest._base and newest.shape == (2, 40)
    grown = append_along(torch.zeros(2, 3, requires_grad=True), torch.ones(2, 1), dim=1)  # autograd: a cat
    assert grown._base is None and grown.grad_fn is not None


def test_split_attention_reads_strided_cache_parts_as_sdpa_reads_their_concatenation():
    """The one-step read of a long cache: per-layer views of an env-first cache, a masked part."""
    g = torch.Generator().manual_seed(0)
    N, L, H, dh, C = 3, 2, 4, 8, 2
    cache_k, cache_v = torch.randn(2, N, L, H, 40, dh, generator=g)  # [N, L, H, P, dh] each
    new_k, new_v, q = torch.randn(3, N, H, C, dh, generator=g)
    keys, values = [cache_k[:, 1], new_k], [cache_v[:, 1], new_v]  # layer 1: strided views, no copy
    assert not keys[0].is_contiguous()
    mask = torch.rand(N, 1, C, 40 + C, generator=g) > 0.3
    mask[..., 40:] = torch.tensor([[True, False], [True, True]])  # the chunk itself, causally
    reference = torch.nn.functional.scaled_dot_product_attention(
        q, torch.cat(keys, dim=2), torch.cat(values, dim=2), attn_mask=mask)
    torch.testing.assert_close(split_attention(q, keys, values, mask), reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", ["memo", "memo_w2", "fct"])
@torch.no_grad()
def test_cores_step_alike_when_steps_read_the_cache_in_place(case, monkeypatch):
    """With the in-place read forced on for every step, outputs match the copying read's."""
    core = make(case)
    x, resets = data(60, 4)
    y_copy, _ = run_steps(core, x, resets)
    monkeypatch.setattr(transformer, "SPLIT_READ_MIN_KEYS", 1)
    monkeypatch.setattr(transformer, "SPLIT_READ_RATIO", 1)
    calls = []
    original = transformer.split_attention
    monkeypatch.setattr(transformer, "split_attention", lambda *a: calls.append(1) or original(*a))
    y_split, _ = run_steps(core, x, resets)
    assert len(calls) >= 60  # every step of every layer once the cache holds a key
    torch.testing.assert_close(y_split, y_copy, atol=1e-5, rtol=0)


def test_cache_takes_the_dtype_of_the_keys_appended():
    """Under bf16 autocast the keys are bf16: the fp32 cache converts once instead of every read."""
    stack = TransformerStack(D, n_layers=1, n_heads=2)
    cache = stack.random_slots(2, torch.arange(3), "cpu")  # fp32, like initial_state
    k = torch.randn(2, 1, 2, 1, D // 2, dtype=torch.bfloat16)  # [N, L, H, C=1, dh]
    grown = append_slots(cache, k, k.clone(), torch.ones(2, 1, dtype=torch.bool), torch.full((2, 1), 3))
    assert grown.k.dtype == grown.v.dtype == torch.bfloat16 and grown.width == 4
    torch.testing.assert_close(grown.k[:, :, :, :3], cache.k.to(torch.bfloat16), atol=0, rtol=0)


@pytest.mark.parametrize(
    "name,options,message",
    [
        ("memo", dict(segment_length=0), "segment_length must be >= 1"),
        ("memo", dict(window=0), "window must be >= 1"),
        ("fct", dict(n_heads=3), "n_heads must divide d_model=16"),
        ("trxl", dict(window=None), "trxl needs a window"),
        ("rmt", dict(window=2), "unknown option 'window' for memory core 'rmt'"),
        ("memo", dict(read="sparse"), "read must be one of full, hcam"),
    ],
)
def test_bad_options_are_clear(name, options, message):
    with pytest.raises(ValueError, match=message):
        build_memory_core(name, D, **options)


@pytest.mark.parametrize("case", ["memo", "memo_w2", "memo_hcam", "memo_hcam_w2", "rmt", "fct", "fct_w10", "trxl"])
@torch.no_grad()
def test_synthetic_state_has_the_shape_of_a_real_one(case):
    """Benchmarks build states at far trial positions; they must match stepping there for real."""
    core = make(case)
    x = torch.randn(43, 2, D)
    _, real = core.forward_sequence(x, core.initial_state(2, "cpu"), None)
    fake = core.synthetic_state(2, 43, "cpu")
    assert core.cached_tokens(fake) == core.cached_tokens(real)
    for a, b in zip(torch.utils._pytree.tree_leaves(real), torch.utils._pytree.tree_leaves(fake)):
        assert a.shape == b.shape and a.dtype == b.dtype
    if isinstance(real[0], KVSlots):
        assert torch.equal(torch.sort(real[0].pos, dim=1).values, torch.sort(fake[0].pos, dim=1).values)
    else:  # hcam read: the same chunk numbers in the same columns
        assert torch.equal(real[0].index[real[0].valid], fake[0].index[fake[0].valid])
    y, _ = core.step(torch.randn(2, D), fake, None)  # and a step runs on it
    assert y.shape == (2, D)
