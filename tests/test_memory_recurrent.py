"""Behavioural tests of the memory-core API with the recurrent cores (none, gru, lstm)."""

from __future__ import annotations

import pytest
import torch

from memo_rl.memory import (
    CORE_NAMES,
    LSTMState,
    MemoryCore,
    build_memory_core,
    cat_states,
    core_names,
    core_option_names,
    detach_state,
    index_state,
    register_core,
    reset_state,
    state_batch_size,
    state_to,
)

torch.set_num_threads(1)

T, N, D = 12, 5, 8
RNN_CASES = [("gru", 1), ("gru", 2), ("lstm", 1), ("lstm", 2)]


def make_core(name: str, n_layers: int) -> MemoryCore:
    torch.manual_seed(0)
    return build_memory_core(name, D, n_layers=n_layers).eval()


def inputs(seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, N, D, generator=g)


def reset_patterns() -> dict[str, torch.Tensor]:
    none = torch.zeros(T, N, dtype=torch.bool)
    at0 = none.clone()
    at0[0] = True
    some = none.clone()
    some[0, 1] = True
    some[4, 0] = some[4, 3] = True
    some[9, 2] = True
    all_mid = none.clone()
    all_mid[0] = all_mid[6] = True
    last = none.clone()
    last[T - 1, 4] = True
    return {"none": none, "t0": at0, "some_envs": some, "all_envs": all_mid, "last_step": last}


def run_steps(core: MemoryCore, x: torch.Tensor, resets: torch.Tensor, state=None):
    state = core.initial_state(x.shape[1], x.device) if state is None else state
    ys = []
    for t in range(x.shape[0]):
        y, state = core.step(x[t], state, resets[t])
        ys.append(y)
    return torch.stack(ys), state  # [T, N, d]


def assert_states_close(a, b, atol=1e-5):
    la, lb = torch.utils._pytree.tree_leaves(a), torch.utils._pytree.tree_leaves(b)
    assert len(la) == len(lb)
    for u, v in zip(la, lb):
        torch.testing.assert_close(u, v, atol=atol, rtol=0)


def assert_step_matches_sequence(core: MemoryCore) -> None:
    """``forward_sequence`` from the initial state equals stepping, under the ``some_envs`` resets."""
    x, resets = inputs(), reset_patterns()["some_envs"]
    with torch.no_grad():
        y_seq, s_seq = core.forward_sequence(x, core.initial_state(N), resets)
        y_step, s_step = run_steps(core, x, resets)
    torch.testing.assert_close(y_seq, y_step, atol=1e-5, rtol=0)
    assert_states_close(s_seq, s_step)


# ---------------------------------------------------------------------------------------- registry


def test_registry_and_build_errors():
    assert {"none", "gru", "lstm"} <= set(CORE_NAMES)
    assert CORE_NAMES == core_names()[: len(CORE_NAMES)]
    with pytest.raises(ValueError, match=r"unknown memory core 'x'; choose from: .*gru.*lstm"):
        build_memory_core("x", D)
    with pytest.raises(ValueError, match=r"'segment_length'.*'gru'.*accepted options: n_layers"):
        build_memory_core("gru", D, segment_length=4)
    with pytest.raises(ValueError, match=r"'n_layers'.*'none'.*accepted options: \(none\)"):
        build_memory_core("none", D, n_layers=2)
    assert core_option_names("lstm") == ("n_layers", "chrono_timescale", "orthogonal_gain")
    assert core_option_names("none") == ()
    with pytest.raises(ValueError, match="unknown memory core"):
        core_option_names("nope")


def test_register_core_rejects_duplicates_and_non_cores():
    with pytest.raises(ValueError, match="already registered"):
        register_core("gru", type("OtherCore", (MemoryCore,), {}))
    with pytest.raises(TypeError):
        register_core("not_a_core_xyz", dict)
    assert "not_a_core_xyz" not in core_names()


def test_register_core_as_decorator_and_default_step():
    name = "test_cumsum_core"

    @register_core(name)
    class CumSum(MemoryCore):
        """A running sum (per env), used to check the default ``step`` of the base class."""

        def __init__(self, d_model: int, scale: float = 1.0):
            super().__init__(d_model)
            self.scale = scale

        def initial_state(self, batch_size, device=None):
            return torch.zeros(batch_size, self.d_model, device=device)

        def forward_sequence(self, x, state, resets):
            ys = []
            for t in range(x.shape[0]):
                state = self.reset_state(state, resets[t])
                state = state + self.scale * x[t]
                ys.append(state)
            return torch.stack(ys), state

    try:
        assert core_option_names(name) == ("scale",)
        core = build_memory_core(name, D, scale=2.0)
        assert_step_matches_sequence(core)
    finally:
        from memo_rl.memory import base

        base._REGISTRY.pop(name)


# ------------------------------------------------------------------------------------ none (identity)


def test_none_core_is_identity():
    core = build_memory_core("none", D)
    assert core.d_model == D and not core.is_recurrent
    state = core.initial_state(N, "cpu")
    assert state == ()
    x = inputs()
    resets = reset_patterns()["some_envs"]
    y, state = core.forward_sequence(x, state, resets)
    assert torch.equal(y, x) and state == ()
    y1, state = core.step(x[0], state, resets[0])
    assert torch.equal(y1, x[0]) and state == ()
    assert core.cached_tokens(state) == 0
    assert index_state(state, torch.tensor([0, 2])) == ()
    assert cat_states([state, state]) == ()
    assert state_batch_size(state) is None
    assert list(core.parameters()) == []


# ------------------------------------------------------------------------------- gru / lstm behaviour


@pytest.mark.parametrize("name,n_layers", RNN_CASES)
@pytest.mark.parametrize("pattern", list(reset_patterns()))
def test_step_matches_forward_sequence(name, n_layers, pattern):
    core = make_core(name, n_layers)
    x, resets = inputs(), reset_patterns()[pattern]
    # Start from a non-zero state so that resets at t=0 matter.
    start = torch.utils._pytree.tree_map(lambda v: torch.randn_like(v), core.initial_state(N))
    with torch.no_grad():
        y_seq, s_seq = core.forward_sequence(x, start, resets)
        y_step, s_step = run_steps(core, x, resets, start)
    assert y_seq.shape == (T, N, D)
    torch.testing.assert_close(y_seq, y_step, atol=1e-5, rtol=0)
    assert_states_close(s_seq, s_step)


@pytest.mark.parametrize("name,n_layers", RNN_CASES)
def test_forward_sequence_in_chunks_matches_whole(name, n_layers):
    core = make_core(name, n_layers)
    x, resets = inputs(), reset_patterns()["some_envs"]
    with torch.no_grad():
        y_all, s_all = core.forward_sequence(x, core.initial_state(N), resets)
        y_a, s = core.forward_sequence(x[:5], core.initial_state(N), resets[:5])
        y_b, s = core.forward_sequence(x[5:], s, resets[5:])
    torch.testing.assert_close(torch.cat([y_a, y_b]), y_all, atol=1e-5, rtol=0)
    assert_states_close(s, s_all)


@pytest.mark.parametrize("name,n_layers", RNN_CASES)
def test_causality(name, n_layers):
    core = make_core(name, n_layers)
    x, resets = inputs(), reset_patterns()["some_envs"]
    t0 = 5
    x2 = x.clone()
    x2[t0] += 1.0
    with torch.no_grad():
        y, _ = core.forward_sequence(x, core.initial_state(N), resets)
        y2, _ = core.forward_sequence(x2, core.initial_state(N), resets)
    assert torch.equal(y[:t0], y2[:t0])
    diff = (y - y2).abs().amax(dim=-1)  # [T, N]
    assert (diff[t0] > 1e-4).all()  # the perturbed step changes every env's output at t0 ...
    # ... and later outputs until the env's next reset (env 2 resets at t=9).
    assert (diff[t0 + 1 :, 0] > 1e-6).all()
    assert (diff[t0 + 1 : 9, 2] > 1e-6).all()


@pytest.mark.parametrize("name,n_layers", RNN_CASES)
def test_reset_isolates(name, n_layers):
    core = make_core(name, n_layers)
    x, resets = inputs(), reset_patterns()["some_envs"]  # env 0 and 3 reset at t=4, env 2 at t=9
    x2 = x.clone()
    x2[:4] = torch.randn(4, N, D)
    start = torch.utils._pytree.tree_map(lambda v: torch.randn_like(v), core.initial_state(N))
    with torch.no_grad():
        y, s = core.forward_sequence(x, core.initial_state(N), resets)
        y2, s2 = core.forward_sequence(x2, start, resets)
        # After a reset the outputs equal those of a fresh memory fed only the later inputs.
        y_fresh, _ = core.forward_sequence(x[4:], core.initial_state(N), None)
    for n in (0, 3):
        torch.testing.assert_close(y[4:, n], y2[4:, n], atol=1e-6, rtol=0)
        torch.testing.assert_close(y[4:, n], y_fresh[:, n], atol=1e-5, rtol=0)
    # Env 2 resets only at t=9: earlier changes reach it until then, not after.
    assert not torch.allclose(y[4:9, 2], y2[4:9, 2])
    torch.testing.assert_close(y[9:, 2], y2[9:, 2], atol=1e-6, rtol=0)


@pytest.mark.parametrize("name,n_layers", RNN_CASES)
def test_no_resets_is_one_rnn_call(name, n_layers):
    core = make_core(name, n_layers)
    x = inputs()
    start = torch.utils._pytree.tree_map(lambda v: torch.randn_like(v), core.initial_state(N))
    with torch.no_grad():
        y, s = core.forward_sequence(x, start, torch.zeros(T, N, dtype=torch.bool))
        if name == "gru":
            y_ref, h_ref = core.rnn(x, start.transpose(0, 1).contiguous())  # [N, L, d] -> [L, N, d]
            s_ref = h_ref.transpose(0, 1)
        else:
            y_ref, (h_ref, c_ref) = core.rnn(
                x, (start.h.transpose(0, 1).contiguous(), start.c.transpose(0, 1).contiguous())
            )
            s_ref = LSTMState(h_ref.transpose(0, 1), c_ref.transpose(0, 1))
    torch.testing.assert_close(y, y_ref, atol=0, rtol=0)
    assert_states_close(s, s_ref, atol=0)


@pytest.mark.parametrize("name,n_layers", RNN_CASES)
def test_gradients_flow_through_forward_sequence(name, n_layers):
    core = make_core(name, n_layers).train()
    x = inputs().requires_grad_(True)
    start = torch.utils._pytree.tree_map(
        lambda v: torch.randn_like(v).requires_grad_(True), core.initial_state(N)
    )
    y, s = core.forward_sequence(x, start, reset_patterns()["all_envs"])  # resets at t=0 and t=6
    y.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in core.parameters())
    assert x.grad[:6].abs().sum() > 0 and x.grad[6:].abs().sum() > 0
    # Resets at t=0 cut every path from the start state: its gradient is exactly zero.
    for leaf in torch.utils._pytree.tree_leaves(start):
        assert leaf.grad is None or torch.count_nonzero(leaf.grad) == 0


@pytest.mark.parametrize("name,n_layers", RNN_CASES)
def test_state_convention_and_helpers(name, n_layers):
    core = make_core(name, n_layers)
    assert core.d_model == D and core.is_recurrent
    state = core.initial_state(N, torch.device("cpu"))
    leaves = torch.utils._pytree.tree_leaves(state)
    assert leaves and all(v.shape == (N, n_layers, D) and v.dtype == torch.float32 for v in leaves)
    assert name != "lstm" or isinstance(state, LSTMState)
    assert state_batch_size(state) == N
    with torch.no_grad():
        _, state = core.forward_sequence(inputs(), state, reset_patterns()["some_envs"])
    assert core.cached_tokens(state) == 0
    assert all(v.shape == (N, n_layers, D) for v in torch.utils._pytree.tree_leaves(state))

    # index_state / cat_states round-trip, in a shuffled order.
    perm = torch.tensor([3, 0, 4, 1, 2])
    parts = [
        index_state(state, perm[:2]),
        index_state(state, perm[2:3]),
        index_state(index_state(state, slice(None)), perm[3:]),
    ]
    back = index_state(cat_states(parts), torch.argsort(perm))
    assert type(back) is type(state)
    assert_states_close(back, state, atol=0)

    # Selecting envs then stepping equals stepping then selecting (envs are independent).
    sel = torch.tensor([4, 1])
    x1, r1 = torch.randn(N, D), torch.tensor([False, True, False, False, False])
    with torch.no_grad():
        y_all, s_all = core.step(x1, state, r1)
        y_sel, s_sel = core.step(x1[sel], index_state(state, sel), r1[sel])
    torch.testing.assert_close(y_sel, y_all[sel], atol=1e-6, rtol=0)
    assert_states_close(s_sel, index_state(s_all, sel), atol=1e-6)

    # reset_state zeroes only the selected envs; detach_state / state_to keep values.
    cleared = reset_state(core, state, torch.tensor([True, False, False, True, False]))
    for v, v0 in zip(torch.utils._pytree.tree_leaves(cleared), torch.utils._pytree.tree_leaves(state)):
        assert torch.count_nonzero(v[[0, 3]]) == 0 and torch.equal(v[[1, 2, 4]], v0[[1, 2, 4]])
    assert_states_close(detach_state(state), state, atol=0)
    assert_states_close(state_to(state, "cpu"), state, atol=0)


def test_cat_states_rejects_mismatched_structures():
    gru, lstm = make_core("gru", 1), make_core("lstm", 1)
    with pytest.raises(ValueError, match="different structures"):
        cat_states([gru.initial_state(2), lstm.initial_state(2)])
    with pytest.raises(ValueError):
        cat_states([])


def test_bad_resets_shape_and_options():
    core = make_core("gru", 1)
    with pytest.raises(ValueError, match="resets must have shape"):
        core.forward_sequence(inputs(), core.initial_state(N), torch.zeros(T, N + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="n_layers"):
        build_memory_core("lstm", D, n_layers=0)
    # Empty sequences return the state unchanged; None resets mean no resets.
    s = core.initial_state(N)
    y, s2 = core.forward_sequence(torch.zeros(0, N, D), s, torch.zeros(0, N, dtype=torch.bool))
    assert y.shape == (0, N, D) and s2 is s
    y1, _ = core.forward_sequence(inputs(), s, None)
    y2, _ = core.forward_sequence(inputs(), s, torch.zeros(T, N, dtype=torch.bool))
    torch.testing.assert_close(y1, y2, atol=0, rtol=0)


# ------------------------------------------------------------------------------ chrono initialisation


@pytest.mark.parametrize("name,n_layers", RNN_CASES)
def test_chrono_init_sets_keep_gate_timescales_and_nothing_else(name, n_layers):
    horizon = 500
    torch.manual_seed(0)
    default = build_memory_core(name, D, n_layers=n_layers)
    torch.manual_seed(0)
    chrono = build_memory_core(name, D, n_layers=n_layers, chrono_timescale=horizon)
    for layer in range(n_layers):
        b_ih = getattr(chrono.rnn, f"bias_ih_l{layer}")
        b_hh = getattr(chrono.rnn, f"bias_hh_l{layer}")
        if name == "gru":  # gates (r, z, n): z keeps the state
            keep, rest_ih, rest_hh = b_ih[D : 2 * D] + b_hh[D : 2 * D], [b_ih[:D], b_ih[2 * D :]], [b_hh[:D], b_hh[2 * D :]]
        else:  # gates (i, f, g, o): f keeps the cell, i = -f
            keep = b_ih[D : 2 * D] + b_hh[D : 2 * D]
            torch.testing.assert_close(b_ih[:D] + b_hh[:D], -keep, atol=0, rtol=0)
            rest_ih, rest_hh = [b_ih[2 * D :]], [b_hh[2 * D :]]
        timescale = 1.0 / (1.0 - torch.sigmoid(keep))  # steps over which the gate keeps 1/e of the state
        assert timescale.min() >= 2.0 - 1e-4 and timescale.max() <= horizon + 1e-2
        assert timescale.unique().numel() == D  # one draw per unit, not one value for all
        # Every other parameter is the default init of the same seed (chrono draws after it).
        d_ih = getattr(default.rnn, f"bias_ih_l{layer}")
        d_hh = getattr(default.rnn, f"bias_hh_l{layer}")
        if name == "gru":
            torch.testing.assert_close(torch.cat(rest_ih), torch.cat([d_ih[:D], d_ih[2 * D :]]), atol=0, rtol=0)
            torch.testing.assert_close(torch.cat(rest_hh), torch.cat([d_hh[:D], d_hh[2 * D :]]), atol=0, rtol=0)
        else:
            torch.testing.assert_close(rest_ih[0], d_ih[2 * D :], atol=0, rtol=0)
            torch.testing.assert_close(rest_hh[0], d_hh[2 * D :], atol=0, rtol=0)
        for kind in ("weight_ih", "weight_hh"):
            torch.testing.assert_close(
                getattr(chrono.rnn, f"{kind}_l{layer}"), getattr(default.rnn, f"{kind}_l{layer}"), atol=0, rtol=0
            )


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_chrono_init_carries_gradient_across_an_episode(name):
    """The gradient of the state 100 steps later w.r.t. the first input: vanishing with PyTorch's
    init, usable with chrono init. This is why chrono init helps memory across episodes."""
    steps = 100

    def sensitivity(**options) -> float:
        torch.manual_seed(0)
        core = build_memory_core(name, D, **options)
        x = torch.zeros(steps, 1, D)
        x0 = torch.randn(1, D, requires_grad=True)
        x = torch.cat([x0.unsqueeze(0), x[1:]])  # an input at step 0, zeros after: [steps, 1, D]
        y, _ = core.forward_sequence(x, core.initial_state(1), None)
        (grad,) = torch.autograd.grad(y[-1].sum(), x0)
        return grad.norm().item()

    default, chrono = sensitivity(), sensitivity(chrono_timescale=500)
    assert chrono > 1e-4  # 1e-3 to 1e-2 here, against 1e-14 to 1e-16 with the default init
    assert chrono > 1e4 * default


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_chrono_init_keeps_step_sequence_equivalence_and_rejects_bad_values(name):
    torch.manual_seed(0)
    core = build_memory_core(name, D, n_layers=2, chrono_timescale=64).eval()
    assert_step_matches_sequence(core)
    assert "chrono_timescale" in core_option_names(name)
    with pytest.raises(ValueError, match="chrono_timescale must be an integer >= 2"):
        build_memory_core(name, D, chrono_timescale=1)


# ------------------------------------------------------------------------------ orthogonal initialisation


@pytest.mark.parametrize("name,n_layers", RNN_CASES)
def test_orthogonal_init_sets_every_singular_value_to_the_gain_and_biases_to_zero(name, n_layers):
    gain = 2**0.5
    core = build_memory_core(name, D, n_layers=n_layers, orthogonal_gain=gain)
    gates = 3 if name == "gru" else 4
    for layer in range(n_layers):
        for kind in ("weight_ih", "weight_hh"):
            w = getattr(core.rnn, f"{kind}_l{layer}")  # [gates * D, D], the gates stacked
            assert w.shape == (gates * D, D)
            torch.testing.assert_close(torch.linalg.svdvals(w), torch.full((D,), gain), atol=1e-5, rtol=0)
        for kind in ("bias_ih", "bias_hh"):
            assert torch.count_nonzero(getattr(core.rnn, f"{kind}_l{layer}")) == 0
    assert "orthogonal_gain=1.41421" in repr(core)


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_orthogonal_init_leaves_chrono_biases_and_step_sequence_equivalence(name):
    torch.manual_seed(0)
    core = build_memory_core(name, D, n_layers=2, orthogonal_gain=1.5, chrono_timescale=64).eval()
    keep = core.rnn.bias_ih_l0[D : 2 * D]  # the keep gate's biases: chrono's, written after the zeros
    assert keep.min() >= 0.0 and keep.max() > 1.0
    assert_step_matches_sequence(core)
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match=f"orthogonal_gain must be a number > 0, got {bad}"):
            build_memory_core(name, D, orthogonal_gain=bad)
