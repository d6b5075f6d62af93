"""3D LUT looks: the reference against SciPy and grid_sample, and lut_delta in composite.cu (g++-emulated)."""

import itertools

import numpy as np
import pytest
import torch

from kernels import composite_ops as ops
from kernels import dispatch
from kernels import reference as ref
from kernels.emu import EmuRunner
from kernels.errors import KernelInputError
from realtime.lut import apply_lut, apply_lut_reference, identity_lut
from tests.kernels._helpers import assert_close

CORNERS = list(itertools.product((0, 255), repeat=3))


@pytest.fixture(scope="module")
def emu():
    return EmuRunner.build()


def _lut(d: int, seed: int = 0) -> torch.Tensor:
    """A visible, non-separable look around the identity, overshooting [0, 1] at places."""
    g = torch.Generator().manual_seed(seed)
    return (identity_lut(d) + 0.15 * torch.randn(3, d, d, d, generator=g)).float()


def _frame(h: int, w: int, seed: int = 1) -> torch.Tensor:
    """Random uint8 BGR with the 8 cube corners in the first row and 0/255 runs in the last."""
    g = torch.Generator().manual_seed(seed)
    f = torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=g)
    if w >= 8:
        f[0, :8] = torch.tensor(CORNERS, dtype=torch.uint8)
    if h >= 2:
        f[-1, ::2, 0], f[-1, 1::2, 1] = 0, 255
    return f


# ---------------------------------------------------------------------------------------------
# Reference semantics
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("d", [2, 17, 33])
def test_reference_matches_scipy_and_grid_sample(d):
    lut = _lut(d, seed=d)
    f = _frame(23, 37)
    x = ref.frame_to_rgb(f)  # [3, H, W]
    got = ref.lut_sample(lut, x)
    want = apply_lut_reference(lut.numpy(), x.permute(1, 2, 0).numpy())  # independent (SciPy, float64)
    assert_close(got.permute(1, 2, 0), torch.from_numpy(want), 1e-6, name=f"vs SciPy, D={d}")
    assert_close(got, apply_lut(lut, x[None])[0], 1e-6, name=f"vs grid_sample, D={d}")
    # values outside [0, 1] are clamped to the faces, as apply_lut does
    wide = x[:, :2] * 1.6 - 0.3
    assert_close(ref.lut_sample(lut, wide), apply_lut(lut, wide[None])[0], 1e-6, name="clamped")


@pytest.mark.parametrize("d", [17, 33])
def test_reference_hits_the_lattice_exactly_at_the_cube_corners(d):
    lut = _lut(d, seed=3)
    corners = torch.tensor(CORNERS, dtype=torch.uint8).view(1, 8, 3).flip(-1)  # BGR of (r, g, b)
    got = ref.lut_sample(lut, ref.frame_to_rgb(corners))[:, 0]  # [3, 8]
    end = d - 1
    want = torch.stack([lut[:, r // 255 * end, g // 255 * end, b // 255 * end] for r, g, b in CORNERS], 1)
    assert torch.equal(got, want)


def test_reference_delta_definition():
    f = _frame(5, 9)
    lut = _lut(17)
    d = ref.lut_delta(f, lut, 0.6, torch.float16)
    x = ref.frame_to_rgb(f)
    assert d.shape == (1, 3, 5, 9) and d.dtype == torch.float16
    assert_close(d, ((ref.lut_sample(lut, x) - x) * 0.6)[None], 1e-3, name="delta")
    assert ref.lut_delta(f, identity_lut(33), 1.0).abs().max() < 1e-6  # the identity changes nothing
    assert torch.equal(ref.lut_delta(f.numpy(), lut.numpy()), ref.lut_delta(f, lut))  # numpy in, same out


# ---------------------------------------------------------------------------------------------
# lut_delta in composite.cu compiled by g++ (cuda_emu.h), launched block by block
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("d", [17, 33])
@pytest.mark.parametrize("hw", [(1, 1), (2, 8), (23, 37), (9, 70)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_lut_delta_emulated_is_bit_exact(emu, d, hw, dtype):
    f = _frame(*hw, seed=hw[0] + d)
    lut = _lut(d, seed=d)
    for scale in (1.0, 0.37):
        got = ops.lut_delta(f, lut, scale, dtype, emu)
        want = ref.lut_delta(f, lut, scale, dtype)
        assert got.dtype == dtype and got.shape == (1, 3, *hw)
        assert_close(got, want, 0.0, name=f"D={d} {list(hw)} scale {scale}")  # same operations, same order
        assert got.abs().max() > 0.01  # the look changes the frame


@pytest.mark.parametrize("d", [17, 33])
def test_lut_delta_emulated_at_the_cube_corners(emu, d):
    lut = _lut(d, seed=5)
    f = torch.tensor(CORNERS, dtype=torch.uint8).view(2, 4, 3)
    got = ops.lut_delta(f, lut, 1.0, torch.float32, emu)[0]  # [3, 2, 4]
    x = ref.frame_to_rgb(f)
    end = d - 1
    for k, (b, g, r) in enumerate(CORNERS):  # the frame holds BGR triples
        lattice = lut[:, r // 255 * end, g // 255 * end, b // 255 * end]
        assert torch.equal(got[:, k // 4, k % 4], lattice - x[:, k // 4, k % 4]), (b, g, r)


def test_lut_delta_emulated_non_contiguous_inputs(emu):
    f = _frame(30, 40)[3:20, 5:36]  # a crop: rows are strided
    lut = _lut(17, seed=7).permute(0, 3, 2, 1).contiguous().permute(0, 3, 2, 1)  # same values, other strides
    assert not (f.is_contiguous() or lut.is_contiguous())
    assert_close(ops.lut_delta(f, lut, 0.8, torch.float32, emu), ref.lut_delta(f, lut, 0.8), 0.0)


def test_dispatch_uses_the_reference_for_cpu_frames():
    f, lut = _frame(6, 7), _lut(17)
    assert not dispatch.uses_cupy(f)
    assert torch.equal(dispatch.lut_delta(f, lut, 0.5, torch.float16), ref.lut_delta(f, lut, 0.5, torch.float16))


# ---------------------------------------------------------------------------------------------
# Bad input: one-line errors naming the argument
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lut, kw, match", [
    (torch.zeros(3, 17, 17), {}, r"lut: a 3D LUT must be float32 \[3, D, D, D\]"),
    (torch.zeros(3, 17, 17, 9), {}, r"lut: a 3D LUT must be float32"),
    (torch.zeros(3, 1, 1, 1), {}, r"2 <= D <= 129"),
    (torch.zeros(3, 5, 5, 5, dtype=torch.float64), {}, "got torch.float64"),
    (torch.zeros(3, 5, 5, 5, device="meta"), {}, "lut: expected a tensor on cpu"),
    (torch.zeros(3, 5, 5, 5), {"scale": float("nan")}, "scale: expected a finite number"),
    (torch.zeros(3, 5, 5, 5), {"scale": "one"}, "scale: expected a finite number"),
    (torch.zeros(3, 5, 5, 5), {"out_dtype": torch.bfloat16}, "out_dtype: expected"),
])
def test_bad_input(emu, lut, kw, match):
    f = _frame(4, 4)
    args = dict(scale=1.0, out_dtype=torch.float32) | kw
    for fn in (lambda: ref.lut_delta(f, lut, **args),
               lambda: ops.lut_delta(f, lut, args["scale"], args["out_dtype"], emu)):
        with pytest.raises(KernelInputError, match=match):
            fn()
    with pytest.raises(KernelInputError, match="frame: expected dtype uint8"):
        ops.lut_delta(np.zeros((4, 4, 3), np.float32), torch.zeros(3, 5, 5, 5), 1.0, torch.float32, emu)
