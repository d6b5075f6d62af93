"""Kernels on a real GPU against the references (skipped, with the reason, without CUDA)."""

import itertools

import pytest
import torch

from kernels import reference as ref
from tests.kernels._helpers import TOL, assert_close, assert_u8_close

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="needs a CUDA GPU (the CPU checks of the same kernels run in "
                                        "test_triton_norm.py under the interpreter, test_composite.py and "
                                        "test_lut.py emulated)")]


@pytest.fixture(scope="module")
def status():
    from kernels import dispatch

    ok, reason = dispatch.gpu_status()
    assert ok, f"GPU providers do not work on this CUDA machine: {reason}"
    return reason


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 5, 7, 9), (1, 32, 135, 241), (1, 3, 271, 481)])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_triton_norm(status, dtype, shape, layout):
    from kernels import triton_norm

    x = (torch.randn(shape) * 2 + 1).to(dtype).cuda()
    res = torch.randn(shape).to(dtype).cuda()
    if layout == "channels_last":
        x, res = x.to(memory_format=torch.channels_last), res.to(memory_format=torch.channels_last)
    g, b = torch.randn(4, shape[1]).cuda(), torch.randn(4, shape[1]).cuda()
    w = torch.softmax(torch.randn(shape[0], 4), 1).cuda()
    state = (torch.randn(shape[:2]).cuda(), torch.rand(shape[:2]).cuda() + 0.5)
    y, s = triton_norm.cond_instance_norm(x, g, b, w, "leaky", res, stats_state=state, momentum=0.3)
    want, ws = ref.cond_instance_norm(x, g, b, w, "leaky", res, stats_state=state, momentum=0.3)
    atol, rtol = TOL[dtype]
    assert_close(y, want, atol * 2, rtol * 2, name="y")
    assert_close(s[1], ws[1], 1e-4, 1e-4, name="var")


@pytest.mark.parametrize("size", [(1, 1), (37, 53), (720, 1280), (1081, 1921)])
def test_cupy_composite_prepare_blur(status, size):
    from kernels import cupy_ops

    g = torch.Generator().manual_seed(0)
    f = torch.randint(0, 256, (*size, 3), dtype=torch.uint8, generator=g).cuda()
    m = torch.rand(65, 49, generator=g).cuda()
    fg = (torch.rand(1, 3, 67, 97, generator=g) - 0.5).half().cuda()
    bg = cupy_ops.masked_blur(cupy_ops.prepare(f, max(1, size[0] // 4), max(1, size[1] // 4)), m, 3.0, 0.4, 0.1,
                              torch.float16)
    bg_ref = ref.masked_blur(ref.prepare(f, max(1, size[0] // 4), max(1, size[1] // 4)), m, 3.0, 0.4, 0.1,
                             torch.float16)
    assert_close(bg, bg_ref, 2e-3, 2e-3, name="masked_blur")
    out = cupy_ops.composite(f, m, fg, bg, "delta", "image", 0.4, 0.1, 0.9)
    assert_u8_close(out, ref.composite(f, m, fg, bg_ref, "delta", "image", 0.4, 0.1, 0.9))
    x = cupy_ops.prepare(f, 256, 320, torch.float16)
    assert_close(x, ref.prepare(f, 256, 320, torch.float16), 1e-3, name="prepare")


@pytest.mark.parametrize("d", [17, 33])
@pytest.mark.parametrize("size", [(1, 1), (37, 53), (720, 1280), (1081, 1921)])
def test_cupy_lut_delta(status, d, size):
    from kernels import cupy_ops
    from realtime.lut import apply_lut, identity_lut

    g = torch.Generator().manual_seed(d)
    f = torch.randint(0, 256, (*size, 3), dtype=torch.uint8, generator=g)
    corners = torch.tensor(list(itertools.product((0, 255), repeat=3)), dtype=torch.uint8)  # [8, 3]
    f.view(-1, 3)[:8] = corners[-f.shape[0] * f.shape[1]:]  # the 8 cube corners (1×1: white)
    f = f.cuda()
    lut = (identity_lut(d) + 0.15 * torch.randn(3, d, d, d, generator=g)).cuda()
    for dtype, atol in ((torch.float32, 2e-6), (torch.float16, 1e-3)):
        got = cupy_ops.lut_delta(f, lut, 0.7, dtype)
        assert got.dtype == dtype and got.shape == (1, 3, *size)
        assert_close(got, ref.lut_delta(f, lut, 0.7, dtype), atol, name=f"lut_delta D={d} {dtype}")
    # the device path's change as it was computed before the kernel: grid_sample on the float frame
    x = ref.prepare(f, *size, torch.float32)
    assert_close(cupy_ops.lut_delta(f, lut, 0.7), (apply_lut(lut, x) - x) * 0.7, 1e-5, name="vs apply_lut")
