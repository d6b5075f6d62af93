"""Compositing: the reference's definitions, and composite.cu (g++-emulated) against the reference."""

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kernels import composite_ops as ops
from kernels import reference as ref
from kernels.emu import EmuRunner
from kernels.errors import KernelInputError
from tests.kernels._helpers import assert_close, assert_u8_close


@pytest.fixture(scope="module")
def emu():
    return EmuRunner.build()


def _frame(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=g)


def _rand(*shape, seed=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g).to(dtype)


# ---------------------------------------------------------------------------------------------
# Reference semantics (the spec itself)
# ---------------------------------------------------------------------------------------------

def test_prepare_is_bgr_to_rgb_and_torch_bilinear():
    f = _frame(9, 14)
    x = ref.prepare(f.numpy(), 5, 23)
    rgb = f.flip(-1).permute(2, 0, 1)[None].float() / 255.0
    want = F.interpolate(rgb, size=(5, 23), mode="bilinear", align_corners=False)
    assert x.shape == (1, 3, 5, 23) and x.dtype == torch.float32
    assert_close(x, want, 1e-7, name="prepare")
    same = ref.prepare(f, 9, 14, torch.float16)
    assert same.dtype == torch.float16 and torch.equal(same.float(), (rgb.half().float()))


def test_composite_identities():
    f = _frame(11, 13)
    m = _rand(4, 5)
    # No treatments: the original, whatever the mask.
    assert torch.equal(ref.composite(f, m), f)
    # Strength 0: the original, whatever the treatments.
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert torch.equal(ref.composite(f, m, fg=red, bg=red, strength=0.0), f)
    # Mask 1 everywhere, flat red person: pure red, written as BGR.
    out = ref.composite(f, torch.ones(3, 3), fg=red, threshold=0.5, feather=0.1)
    assert (out[..., 2] == 255).all() and (out[..., :2] == 0).all()


def test_hard_threshold_and_smoothstep():
    m = torch.tensor([0.0, 0.29, 0.3, 0.31, 1.0])
    assert ref.feather_alpha(m, 0.3, 0.0).tolist() == [0, 0, 1, 1, 1]
    a = ref.feather_alpha(m, 0.3, 0.1)
    assert a[0] == 0 and a[-1] == 1 and abs(a[2].item() - 0.5) < 1e-6 and 0 < a[1] < 0.5 < a[3] < 1


def test_delta_mode_clamps():
    f = torch.full((2, 2, 3), 250, dtype=torch.uint8)
    up = torch.full((1, 3, 1, 1), 0.2)
    out = ref.composite(f, torch.ones(1, 1), fg=up, fg_mode="delta")
    assert (out == 255).all()
    out = ref.composite(f, torch.ones(1, 1), fg=-up, fg_mode=1)
    assert (out == 199).all()  # 250/255 - 0.2 = 0.7804 -> 199


def test_masked_blur_without_person_is_gaussian_blur():
    img = _rand(1, 3, 21, 30)
    out = ref.masked_blur(img, torch.zeros(3, 3), sigma=2.0)
    src = img[0].permute(1, 2, 0).numpy()
    want = cv2.GaussianBlur(src, (13, 13), 2.0, borderType=cv2.BORDER_REPLICATE)
    assert_close(out[0].permute(1, 2, 0), torch.from_numpy(want), 1e-5, name="vs cv2.GaussianBlur")


def test_masked_blur_keeps_person_colour_out():
    img = torch.zeros(1, 3, 20, 20)
    img[:, 0] = 1.0  # red everywhere...
    img[:, :, :, 10:] = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1)  # ...blue background on the right
    mask = torch.zeros(20, 20)
    mask[:, :10] = 1.0  # the red half is the person
    out = ref.masked_blur(img, mask, sigma=3.0, feather=0.0)
    bg = out[0, :, :, 10:]
    assert bg[0].max() < 1e-6 and (bg[2] - 1).abs().max() < 1e-5  # no red bled into the background


# ---------------------------------------------------------------------------------------------
# composite.cu compiled by g++ (cuda_emu.h), launched block by block, vs the reference
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("hw,out_hw", [((1, 1), (1, 1)), ((23, 37), (11, 53)), ((17, 13), (17, 13)),
                                       ((40, 31), (7, 5))])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_prepare_emulated(emu, hw, out_hw, dtype):
    f = _frame(*hw)
    got = ops.prepare(f, *out_hw, dtype, emu)
    want = ref.prepare(f, *out_hw, dtype)
    assert got.dtype == dtype
    assert_close(got, want, 5e-6 if dtype == torch.float32 else 1e-3, name="prepare")


CASES = {
    "orig-orig-1x1mask": dict(size=(19, 29), mask=(1, 1), fg=None, bg=None),
    "style-lowres-fp16": dict(size=(23, 37), mask=(7, 5), fg=((5, 9), torch.float16, "image"), bg=None,
                              threshold=0.4, feather=0.1),
    "delta-fg-flat-bg": dict(size=(31, 17), mask=(6, 6), fg=((8, 4), torch.float32, "delta"),
                             bg=((1, 1), torch.float16, "image"), threshold=0.5, feather=0.25, strength=0.7),
    "hard-edge-fullres-bg": dict(size=(13, 41), mask=(13, 41), fg=((3, 5), torch.float32, "image"),
                                 bg=((13, 41), torch.float32, "delta"), threshold=0.3, feather=0.0),
    "prime-sizes-upsampled": dict(size=(37, 43), mask=(3, 2), fg=((41, 47), torch.float16, "image"),
                                  bg=((2, 3), torch.float32, "image"), threshold=0.6, feather=0.05,
                                  strength=0.35),
}


def _treat(spec, seed):
    if spec is None:
        return None, "image"
    (h, w), dtype, mode = spec
    t = _rand(1, 3, h, w, seed=seed, dtype=torch.float32)
    if mode == "delta":
        t = t - 0.5
    return t.to(dtype), mode


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_composite_emulated(emu, case):
    c = dict(CASES[case])
    f = _frame(*c.pop("size"))
    m = _rand(*c.pop("mask"), seed=2)
    fg, fg_mode = _treat(c.pop("fg"), 3)
    bg, bg_mode = _treat(c.pop("bg"), 4)
    kw = dict(threshold=0.5, feather=0.1, strength=1.0) | c
    got = ops.composite(f, m, fg, bg, fg_mode, bg_mode, kw["threshold"], kw["feather"], kw["strength"], emu)
    want = ref.composite(f, m, fg, bg, fg_mode, bg_mode, **kw)
    assert_u8_close(got, want, name=case)
    # Guard against a test that cannot fail: the case must actually change the frame.
    if fg is not None or bg is not None:
        assert not torch.equal(got, f)


def test_composite_emulated_non_contiguous_inputs(emu):
    big = _frame(30, 40)
    f = big[3:26, 5:36]  # a crop: rows are strided
    m = _rand(9, 8, seed=5).t()  # transposed mask [8, 9]
    fg = _rand(1, 9, 7, 3, seed=6).permute(0, 3, 1, 2)  # [1, 3, 9, 7] with odd strides
    assert not (f.is_contiguous() or m.is_contiguous() or fg.is_contiguous())
    got = ops.composite(f, m, fg, None, "image", "image", 0.45, 0.1, 0.9, emu)
    assert_u8_close(got, ref.composite(f, m, fg, None, "image", "image", 0.45, 0.1, 0.9))


@pytest.mark.parametrize("src", ["frame", "fp32", "fp16"])
@pytest.mark.parametrize("sigma", [0.0, 1.3, 4.0])
def test_masked_blur_emulated(emu, src, sigma):
    img = _frame(14, 19) if src == "frame" else _rand(1, 3, 14, 19, seed=7,
                                                       dtype=torch.float16 if src == "fp16" else torch.float32)
    m = _rand(5, 4, seed=8)
    for out_dtype in (torch.float32, torch.float16):
        got = ops.masked_blur(img, m, sigma, 0.45, 0.15, out_dtype, emu)
        want = ref.masked_blur(img, m, sigma, 0.45, 0.15, out_dtype)
        assert got.dtype == out_dtype
        assert_close(got, want, 2e-5 if out_dtype == torch.float32 else 1e-3, 1e-3, name=f"blur {src}")


def test_blur_feeds_composite(emu):
    f = _frame(16, 24)
    m = _rand(4, 6, seed=9)
    bg = ops.masked_blur(f, m, 2.0, 0.5, 0.1, torch.float16, emu)
    got = ops.composite(f, m, None, bg, "image", "image", 0.5, 0.1, 1.0, emu)
    assert_u8_close(got, ref.composite(f, m, None, ref.masked_blur(f, m, 2.0, 0.5, 0.1, torch.float16)))


# ---------------------------------------------------------------------------------------------
# Bad input: one-line errors naming the argument
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call,match", [
    (lambda e: ops.composite(torch.zeros(4, 4, 3), torch.zeros(2, 2), None, None, 0, 0, .5, .1, 1., e),
     "frame: expected dtype uint8"),
    (lambda e: ops.composite(_frame(4, 4), torch.zeros(2, 2, 2), None, None, 0, 0, .5, .1, 1., e),
     "mask: expected shape"),
    (lambda e: ops.composite(_frame(4, 4), torch.zeros(2, 2), torch.zeros(1, 4, 2, 2), None, 0, 0, .5, .1, 1., e),
     "fg: expected shape"),
    (lambda e: ops.composite(_frame(4, 4), torch.zeros(2, 2), None, torch.zeros(1, 3, 2, 2).bfloat16(), 0, 0,
                             .5, .1, 1., e), "bg: expected dtype"),
    (lambda e: ops.composite(_frame(4, 4), torch.zeros(2, 2), None, None, "add", 0, .5, .1, 1., e),
     "fg_mode: expected"),
    (lambda e: ops.composite(_frame(4, 4), torch.zeros(2, 2), None, None, 0, 0, 1.5, .1, 1., e),
     "threshold: expected a number in"),
    (lambda e: ops.composite(_frame(4, 4), torch.zeros(2, 2, device="meta"), None, None, 0, 0, .5, .1, 1., e),
     "mask: expected a tensor on cpu"),
    (lambda e: ops.composite(torch.zeros(4, 4, 3, dtype=torch.uint8, device="meta"), torch.zeros(2, 2), None, None,
                             0, 0, .5, .1, 1., e), "frame: the emulated kernels need CPU tensors"),
    (lambda e: ops.prepare(_frame(4, 4), 0, 3, torch.float32, e), "out_h: expected a positive integer"),
    (lambda e: ops.prepare(_frame(4, 4), 2, 3, torch.float64, e), "dtype: expected"),
    (lambda e: ops.masked_blur(_frame(4, 4), torch.zeros(2, 2), -1.0, .5, .1, torch.float32, e), "sigma: expected"),
    (lambda e: ops.masked_blur("img.png", torch.zeros(2, 2), 1.0, .5, .1, torch.float32, e), "image: expected a"),
])
def test_bad_input(emu, call, match):
    with pytest.raises(KernelInputError, match=match):
        call(emu)


def test_reference_accepts_numpy_and_rejects_bad_input():
    f = _frame(6, 7).numpy()
    out = ref.composite(f, np.zeros((2, 2), np.float32))
    assert isinstance(out, torch.Tensor) and np.array_equal(out.numpy(), f)
    with pytest.raises(KernelInputError, match="frame: expected shape"):
        ref.composite(np.zeros((6, 7), np.uint8), np.zeros((2, 2), np.float32))
    with pytest.raises(KernelInputError, match="strength"):
        ref.composite(f, np.zeros((2, 2), np.float32), strength=2)


# ---------------------------------------------------------------------------------------------
# The colour map of guided styles, fused into compositing ("map" mode)
# ---------------------------------------------------------------------------------------------

def _map(seed=5):
    g = torch.Generator().manual_seed(seed)
    m = torch.zeros(10, 3)
    m[0, 0] = m[1, 1] = m[2, 2] = 0.8
    return (m + 0.15 * torch.randn(10, 3, generator=g)).float()


def test_map_mode_is_the_quadratic_formula():
    f = _frame(3, 4)
    m = _map()
    out = ref.composite(f, torch.ones(1, 1), fg=m, fg_mode="map", feather=0.0)
    rgb = f.flip(-1).double() / 255.0  # [h, w, 3] RGB
    r, g, b = rgb.unbind(-1)
    terms = torch.stack([r, g, b, r * r, g * g, b * b, r * g, g * b, r * b, torch.ones_like(r)], -1)
    want = (terms @ m.double()).clamp(0, 1).mul(255).round().to(torch.uint8).flip(-1)
    assert_u8_close(out, want, name="map formula")
    ident = torch.zeros(10, 3)
    ident[0, 0] = ident[1, 1] = ident[2, 2] = 1.0
    assert torch.equal(ref.composite(f, torch.ones(1, 1), fg=ident, fg_mode=2, feather=0.0), f)


@pytest.mark.parametrize("size, strength, bg_mode", [((1, 1), 1.0, "image"), ((37, 53), 0.7, "map"),
                                                      ((48, 64), 1.0, "delta")])
def test_map_mode_emulated(emu, size, strength, bg_mode):
    f = _frame(*size, seed=7)
    m = _rand(5, 7, seed=2)
    fg = _map(6)
    bg = _map(8) if bg_mode == "map" else (_rand(1, 3, 4, 5, seed=9) - (0.5 if bg_mode == "delta" else 0.0))
    got = ops.composite(f, m, fg, bg, "map", bg_mode, 0.5, 0.1, strength, emu)
    want = ref.composite(f, m, fg, bg, "map", bg_mode, 0.5, 0.1, strength)
    assert_u8_close(got, want, name=f"map {size}")
    assert not torch.equal(got, f)


@pytest.mark.parametrize("coeffs, match", [
    (torch.zeros(9, 3), r"a colour map must be float32 \[10, 3\]"),
    (torch.zeros(10, 3, dtype=torch.float16), r"a colour map must be float32 \[10, 3\]"),
    (torch.full((10, 3), float("nan")), "NaN or Inf"),
])
def test_map_mode_bad_coefficients(emu, coeffs, match):
    f = _frame(4, 4)
    for fn in (lambda: ref.composite(f, torch.ones(1, 1), fg=coeffs, fg_mode="map"),
               lambda: ops.composite(f, torch.ones(1, 1), coeffs, None, "map", "image", 0.5, 0.1, 1.0, emu)):
        with pytest.raises(KernelInputError, match=match):
            fn()
