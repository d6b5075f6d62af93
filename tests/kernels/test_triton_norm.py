"""Fused Triton conditional instance norm vs the reference, on the CPU in Triton's interpreter.

Collected only with ``TRITON_INTERPRET=1`` set before triton is imported (see conftest.py);
``make test`` runs this file through ``test_interpreter_subprocess.py``.
"""

import pytest
import torch

from kernels import reference as ref
from kernels import triton_norm as tn
from kernels.errors import KernelInputError
from tests.kernels._helpers import TOL, assert_close

pytestmark = pytest.mark.interpreter


def test_kernels_are_interpreted():
    # A compiled kernel would fail on CPU tensors anyway; this says why up front.
    assert tn.INTERPRET, "kernels.triton_norm was imported without TRITON_INTERPRET=1"
    assert type(tn._cin_fused_kernel).__name__ == "InterpretedFunction"


def _bank(s, c, dtype=torch.float32):
    return torch.randn(s, c).to(dtype) * 0.5 + 1.0, torch.randn(s, c).to(dtype) * 0.3


def _check(x, gamma, beta, sel, act, residual=None, name="y", **kw):
    y = tn.cond_instance_norm(x, gamma, beta, sel, act, residual, **kw)
    kw.pop("split", None)
    want = ref.cond_instance_norm(x, gamma, beta, sel, act, residual, **kw)
    if isinstance(want, tuple):
        (y, (m, v)), (want, (wm, wv)) = y, want
        assert_close(m, wm, 1e-5, 1e-5, name="mean state")
        assert_close(v, wv, 1e-5, 1e-4, name="var state")
    assert y.dtype == x.dtype and y.shape == x.shape
    atol, rtol = TOL[x.dtype]
    assert_close(y, want, atol, rtol, name=name)
    return (y, (m, v)) if kw.get("momentum") is not None else y


SHAPES = [(1, 1, 1, 1), (1, 3, 1, 1), (2, 5, 7, 9), (3, 2, 13, 17), (1, 2, 31, 37), (2, 3, 1, 97)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_odd_shapes_fp32_index(shape):
    n, c = shape[:2]
    x = torch.randn(shape) * 2 + 0.5
    g, b = _bank(4, c)
    _check(x, g, b, torch.randint(0, 4, (n,)), "relu")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("act", ["relu", "leaky", None])
def test_half_precisions(dtype, act):
    x = (torch.randn(2, 3, 11, 13) * 3 + 1).to(dtype)
    g, b = _bank(3, 3, dtype)
    res = torch.randn(2, 3, 11, 13).to(dtype)
    _check(x, g, b, torch.tensor([2, 0]), act, res)


def test_blend_weights_cross_fade():
    x = torch.randn(3, 4, 9, 10)
    g, b = _bank(5, 4)
    w = torch.softmax(torch.randn(3, 5), dim=1)
    _check(x, g, b, w, "leaky", torch.randn(3, 4, 9, 10))


def test_one_hot_weights_equal_index():
    x = torch.randn(2, 3, 8, 8)
    g, b = _bank(4, 3)
    by_idx = tn.cond_instance_norm(x, g, b, torch.tensor([3, 1]), "relu")
    by_w = tn.cond_instance_norm(x, g, b, torch.eye(4)[[3, 1]], "relu")
    assert_close(by_w, by_idx, 1e-6, name="one-hot weights")


def test_per_sample_rows_adapter_matches_student_reference():
    x = torch.randn(2, 6, 10, 7)
    gr, br = torch.randn(2, 6), torch.randn(2, 6)
    res = torch.randn(2, 6, 10, 7)
    got = tn.norm_rows(x, gr, br, None, res, 1e-5)
    assert_close(got, ref.norm_rows(x, gr, br, None, res, 1e-5), 2e-5, 2e-5, name="adapter")


def test_non_contiguous_inputs():
    base = torch.randn(2, 8, 12, 9)
    x = base[:, ::2]  # planes contiguous, channels strided: read in place
    res = torch.randn(2, 4, 9, 12).transpose(2, 3)  # H×W not foldable: copied
    g = torch.randn(4, 3).t()  # bank [S=3, C=4], transposed storage
    b = torch.randn(4, 3).t()
    assert not x.is_contiguous() and not res.is_contiguous() and not g.is_contiguous()
    _check(x, g, b, torch.tensor([2, 1]), "leaky", res)


def test_channels_last_keeps_format():
    x = torch.randn(2, 37, 5, 7).to(memory_format=torch.channels_last)
    res = torch.randn(2, 37, 5, 7).to(memory_format=torch.channels_last)
    g, b = _bank(3, 37)
    y = _check(x, g, b, torch.tensor([0, 2]), "relu", res)
    assert y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_split_planes(layout):
    # Large planes with few channels are split over several programs plus a statistics pass.
    x = torch.randn(1, 3, 19, 23) * 4 - 2
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    g, b = _bank(2, 3)
    _check(x, g, b, torch.tensor([1]), "leaky", torch.randn(1, 3, 19, 23), split=5)


def test_temporal_smoothing_state():
    g, b = _bank(2, 4)
    idx = torch.tensor([1, 0])
    x0, x1 = torch.randn(2, 4, 9, 11), torch.randn(2, 4, 9, 11) * 2 + 1
    y0, state = _check(x0, g, b, idx, "relu", momentum=0.8)
    assert_close(state[0], x0.mean(dim=(2, 3)), 1e-5, name="first-frame mean = current mean")
    _check(x1, g, b, idx, "relu", stats_state=state, momentum=0.8)
    _check(x1, g, b, idx, "relu", stats_state=state, momentum=0.8, split=3)


def test_momentum_one_freezes_statistics():
    g, b = _bank(1, 2)
    x = torch.randn(1, 2, 6, 6)
    state = (torch.full((1, 2), 0.5), torch.full((1, 2), 4.0))
    y, new = tn.cond_instance_norm(x, g, b, torch.tensor([0]), None, stats_state=state, momentum=1.0)
    assert_close(new[0], state[0], 1e-6, name="mean kept")
    assert_close(new[1], state[1], 1e-6, name="var kept")
    want = (x - 0.5) / torch.sqrt(torch.tensor(4.0 + 1e-5)) * g[0, :, None, None] + b[0, :, None, None]
    assert_close(y, want, 1e-5, 1e-5, name="frozen stats")


def test_large_mean_small_spread_is_accurate():
    # The shifted sums avoid the cancellation of E[x^2] - E[x]^2 on such data.
    x = torch.randn(2, 3, 16, 16) * 0.01 + 1000.0
    g, b = torch.ones(2, 3), torch.zeros(2, 3)
    y = tn.cond_instance_norm(x, g, b, None, None)
    xd = x.double()
    truth = (xd - xd.mean((2, 3), keepdim=True)) / torch.sqrt(xd.var((2, 3), unbiased=False, keepdim=True) + 1e-5)
    assert_close(y, truth, 2e-3, name="vs float64")


def test_bad_input_rejected_before_launch():
    g, b = _bank(2, 3)
    with pytest.raises(KernelInputError, match="x: expected dtype"):
        tn.cond_instance_norm(torch.zeros(1, 3, 4, 4, dtype=torch.int32), g, b, torch.tensor([0]))
    with pytest.raises(KernelInputError, match="style_idx: expected indices in 0..1"):
        tn.cond_instance_norm(torch.zeros(1, 3, 4, 4), g, b, torch.tensor([2]))
    with pytest.raises(KernelInputError, match="gamma: expected shape"):
        tn.cond_instance_norm(torch.zeros(1, 4, 4, 4), g, b, torch.tensor([0]))


def test_student_forward_with_the_fused_norm():
    # End to end through realtime.student.set_norm_impl: every CIN layer runs the Triton kernel.
    from realtime.student import build_student, set_norm_impl, style_weights

    net = build_student("cin-resnet-xs", width=4, num_styles=3).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.2)  # non-trivial style rows and head
        x = torch.rand(1, 3, 18, 22)
        w = style_weights([0.2, 0.0, 0.8], 3)
        want = net(x, w)
        set_norm_impl(tn.norm_rows)
        try:
            got = net(x, w)
        finally:
            set_norm_impl(None)
    assert_close(got, want, 1e-4, 1e-4, name="student output")
    assert (want - x).abs().max() > 1e-3  # the style changes the image: the comparison can fail


def test_bench_timing_path_with_every_provider(monkeypatch):
    # The GPU benchmark code, run on the CPU: Triton interpreted, the CuPy ops on the emulated .cu.
    from kernels import benchmarks as bench, cupy_ops
    from kernels.emu import EmuRunner

    monkeypatch.setattr(cupy_ops, "runner", EmuRunner.build)
    layers = bench.norm_layers
    monkeypatch.setattr(bench, "norm_layers", lambda h, w: layers(h, w)[2:4])  # one relu, one residual layer
    res = bench.time_size(8, 12, torch.device("cpu"), ["reference", "triton", "cupy"], warmup=0, reps=1)
    for op in ("norm", "norm_channels_last", "composite", "prepare", "masked_blur"):
        assert "speedup" in res[op] and res[op]["reference"]["median_ms"] > 0, op
    assert res["norm"]["triton"]["bytes"] > 0 and "GB_per_s" in res["norm"]["triton"] and res["kernels_frame_ms"] > 0
