"""The fixed-buffer streaming Memo stepper computes what ``MemoCore.step`` computes."""

from __future__ import annotations

import pytest
import torch

from memo_rl.memory import build_memory_core
from memo_rl.memory.streaming import StreamingMemoStepper

torch.set_num_threads(1)

D, SEG, SUM, WINDOW = 16, 8, 2, 3


def make_core(window: int | None = WINDOW, name: str = "memo", **options):
    torch.manual_seed(0)
    if name == "memo":
        options["window"] = window
    core = build_memory_core(name, D, segment_length=SEG, summary_length=SUM, n_layers=2, n_heads=2, **options)
    return core.eval()


def stream(T: int, N: int, seed: int = 1, reset_prob: float = 0.03) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``[T, N, D]`` and resets ``[T, N]``: every env starts a trial at 0, then resets at random times
    (so envs sit at different steps of their segments)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, N, D, generator=g)
    resets = torch.rand(T, N, generator=g) < reset_prob
    resets[0] = True
    return x, resets


@pytest.mark.parametrize("name", ["memo", "rmt"])
@torch.no_grad()
def test_stepper_outputs_equal_core_steps_across_summaries_window_and_resets(name):
    core = make_core(name=name)
    T, N = 120, 5  # 15 segments: the ring of 3 blocks is overwritten several times
    x, resets = stream(T, N)
    assert resets[1:].any(dim=0).sum() >= 3, "the stream must reset several envs mid-trial"
    stepper = StreamingMemoStepper(core, N)
    state = core.initial_state(N)
    for t in range(T):
        y_core, state = core.step(x[t], state, resets[t])
        y = stepper.step(x[t], resets[t])
        torch.testing.assert_close(y, y_core, atol=1e-5, rtol=1e-5, msg=f"step {t}")
    torch.testing.assert_close(stepper.n_blocks, state.n_blocks)
    torch.testing.assert_close(stepper.seg_steps, state.seg_steps)
    assert int(state.n_blocks.max()) > core.window, "some env must have written more blocks than the window holds"


@torch.no_grad()
def test_stepper_takes_over_a_core_state_and_hands_back_one_the_core_continues():
    core = make_core()
    T, N = 150, 4
    x, resets = stream(T, N, seed=2)
    state = core.initial_state(N)
    for t in range(70):  # mid-segment for most envs, more blocks written than the window keeps
        _, state = core.step(x[t], state, resets[t])
    assert len(set(state.seg_steps.tolist())) > 1
    stepper = StreamingMemoStepper(core, N)
    stepper.load(state)
    core_state = state
    for t in range(70, 110):
        y_core, core_state = core.step(x[t], core_state, resets[t])
        torch.testing.assert_close(stepper.step(x[t], resets[t]), y_core, atol=1e-5, rtol=1e-5)
    handed_back = stepper.state()  # the core continues from the stepper's memory as from its own
    for t in range(110, T):
        y_core, core_state = core.step(x[t], core_state, resets[t])
        y_back, handed_back = core.step(x[t], handed_back, resets[t])
        torch.testing.assert_close(y_back, y_core, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_stepper_loads_a_synthetic_long_trial_state_and_steps_like_the_core():
    core = make_core()
    N, position = 3, 16 * SEG + 5  # block 16 of a trial, 5 steps into its segment
    state = core.synthetic_state(N, position)
    stepper = StreamingMemoStepper(core, N)
    stepper.load(state)
    assert stepper.cached_tokens() == WINDOW * SUM + 5
    x = torch.randn(2 * SEG, N, D, generator=torch.Generator().manual_seed(3))
    for t in range(2 * SEG):  # two summary writes
        y_core, state = core.step(x[t], state, None)
        torch.testing.assert_close(stepper.step(x[t]), y_core, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_stepper_never_reallocates_its_buffers():
    core = make_core()
    stepper = StreamingMemoStepper(core, 2)
    before = [t.data_ptr() for t in (stepper.k, stepper.v, stepper.valid, stepper.pos)]
    x, resets = stream(5 * SEG * WINDOW, 2, seed=4)
    for t in range(x.shape[0]):
        stepper.step(x[t], resets[t].numpy())  # numpy resets, as an env returns them
    assert [t.data_ptr() for t in (stepper.k, stepper.v, stepper.valid, stepper.pos)] == before
    assert stepper.k.shape[3] == WINDOW * SUM + SEG


@torch.no_grad()
def test_a_step_reads_nothing_back_from_the_device(monkeypatch):
    """What makes the step recordable as a CUDA graph: no tensor is read by the host inside it
    (a summary write, which does, runs after the step and only where a segment filled)."""
    core = make_core()
    stepper = StreamingMemoStepper(core, 3)
    stepper.load(core.synthetic_state(3, 5 * SEG + 3))
    stepper._x.copy_(torch.randn(3, D))
    stepper._resets.copy_(torch.tensor([False, True, False]))

    def host_read(*args, **kwargs):
        raise AssertionError("the step read a tensor on the host")

    for name in ("__bool__", "__int__", "__float__", "__index__", "item", "tolist", "numpy", "cpu"):
        monkeypatch.setattr(torch.Tensor, name, host_read)
    with pytest.raises(AssertionError, match="read a tensor on the host"):  # the patch is in force
        bool(stepper.valid.any())
    y = stepper._step_body()
    monkeypatch.undo()
    assert y.shape == (3, D) and stepper.seg_steps.tolist() == [4, 1, 4]  # env 1 was reset, then stepped


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(window=None), "needs a Memo core with a window"),
        (dict(read="hcam", top_k=2), "read=full"),
    ],
)
def test_stepper_refuses_cores_it_cannot_step(options, message):
    with pytest.raises(ValueError, match=message):
        StreamingMemoStepper(make_core(**options), 2)


def test_stepper_errors_are_clear():
    stepper = StreamingMemoStepper(make_core(), 2)
    with pytest.raises(ValueError, match=r"resets must have shape \[2\], got \[3\]"):
        stepper.step(torch.zeros(2, D), torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="cuda_graph=True needs a CUDA device, got cpu"):
        StreamingMemoStepper(make_core(), 2, cuda_graph=True)
    with pytest.raises(ValueError, match="the state holds 3 envs, the stepper 2"):
        stepper.load(make_core().initial_state(3))


gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("amp_dtype", [None, torch.bfloat16])
@torch.no_grad()
def test_cuda_graph_replays_the_eager_step(amp_dtype):
    core = make_core().cuda()
    T, N = 100, 64
    x, resets = stream(T, N, seed=5)
    x = x.cuda()
    eager = StreamingMemoStepper(core, N, "cuda", amp_dtype=amp_dtype)
    graphed = StreamingMemoStepper(core, N, "cuda", amp_dtype=amp_dtype, cuda_graph=True)
    state = core.initial_state(N, "cuda")
    for t in range(T):
        y_eager, y_graph = eager.step(x[t], resets[t]), graphed.step(x[t], resets[t])
        torch.testing.assert_close(y_graph, y_eager, atol=1e-6 if amp_dtype is None else 1e-3, rtol=1e-3)
        if amp_dtype is None:
            y_core, state = core.step(x[t], state, resets[t].cuda())
            torch.testing.assert_close(y_graph, y_core, atol=1e-4, rtol=1e-4)  # other kernels than core.step's
    assert graphed._graph is not None


@pytest.mark.gpu
@gpu
@torch.no_grad()
def test_a_cuda_step_never_waits_for_the_device():
    core = make_core().cuda()
    stepper = StreamingMemoStepper(core, 8, "cuda", amp_dtype=torch.bfloat16)
    stepper.step(torch.randn(8, D, device="cuda"))  # lazily created CUDA state first (may synchronise)
    torch.cuda.set_sync_debug_mode("error")  # raises on any operation that synchronises with the host
    try:
        with stepper._autocast():
            stepper._step_body()
    finally:
        torch.cuda.set_sync_debug_mode("default")
