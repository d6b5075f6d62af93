"""Reference implementations: the specification of every fused op and the CPU path.

Each function here is plain torch on whatever device its inputs live on, computed in float32,
written as separate simple passes so it reads like the definition. The Triton kernel
(:mod:`kernels.triton_norm`) and the CUDA C kernels (``kernels/composite.cu``) are tested
against these.

Definitions shared by the compositing ops:

* **bilinear sampling** uses half-pixel centres: output pixel ``x`` samples source coordinate
  ``max((x + 0.5) * in / out - 0.5, 0)`` with edge clamp and no antialiasing — exactly
  ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``.
* **alpha** ``= smoothstep(threshold - feather, threshold + feather, m)`` with
  ``smoothstep(a, b, m) = t * t * (3 - 2 t)``, ``t = clamp((m - a) / (b - a), 0, 1)``;
  ``feather == 0`` is the hard step ``m >= threshold``.
* **uint8 output** rounds to nearest (ties to even) and clamps to [0, 255].
* **3D LUT** ``[3, D, D, D]`` indexed ``[c, r, g, b]``: lattice point ``i`` sits at ``i / (D - 1)``
  (0 and 1 on the end points, like ``grid_sample(align_corners=True)``); a level ``v`` in [0, 1]
  falls in cell ``i0 = min(floor(v (D - 1)), D - 2)`` at offset ``t = v (D - 1) - i0``, so 1 lands
  exactly on the last point; values are interpolated along b, then g, then r with
  ``a (1 - t) + b t``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from kernels._checks import (
    as_tensor, check_finite, check_frame, check_image, check_lut, check_map, check_mask, check_mode, check_norm_args,
    check_out_dtype, check_range, check_size,
)

LEAKY_SLOPE = 0.2
BLUR_EPS = 1e-4  # denominator floor of masked_blur: fully-person neighbourhoods give 0, not NaN
MAX_SIGMA = 64.0

NormState = tuple[torch.Tensor, torch.Tensor]


# ----------------------------------------------------------------------------------------------
# Conditional instance norm
# ----------------------------------------------------------------------------------------------

def style_rows(gamma: torch.Tensor, beta: torch.Tensor, style_idx: torch.Tensor | None,
               n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample affine rows ``[N, C]`` (float32) from a style bank and a selection.

    Args:
        gamma, beta: style bank ``[S, C]``, or per-sample rows ``[N, C]`` when ``style_idx`` is None.
        style_idx: int ``[N]`` (one style per sample), float ``[N, S]`` (blend weights), or None.
        n: batch size.
    """
    g, b = gamma.float(), beta.float()
    if style_idx is None:
        return g, b
    if style_idx.is_floating_point():
        w = style_idx.float()
        return w @ g, w @ b
    idx = style_idx.long()
    return g[idx], b[idx]


def cond_instance_norm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                       style_idx: torch.Tensor | None = None, act: str | None = "relu",
                       residual: torch.Tensor | None = None, eps: float = 1e-5,
                       stats_state: NormState | None = None, momentum: float | None = None
                       ) -> torch.Tensor | tuple[torch.Tensor, NormState]:
    """Conditional instance norm + activation + residual (the spec of the fused Triton kernel).

    ``y = act((x - mean) / sqrt(var + eps) * gamma_n + beta_n) + residual`` where ``mean``/``var``
    are the per-(sample, channel) statistics over H×W (biased variance, like
    ``F.instance_norm``), computed in float32. Leaky slope is 0.2.

    Temporal smoothing (to cut flicker in video): when ``momentum`` is given the statistics
    used are ``momentum * previous + (1 - momentum) * current`` for mean and variance
    separately (``previous`` from ``stats_state``; without a state the current statistics are
    used as-is), and the function returns ``(y, (mean, var))`` — the state for the next frame.

    Args:
        x: input ``[N, C, H, W]``, fp16/bf16/fp32.
        gamma, beta: style bank ``[S, C]`` (or per-sample rows ``[N, C]`` with ``style_idx=None``).
        style_idx: int ``[N]`` style per sample, or float ``[N, S]`` blend weights, or None.
        act: ``"relu"``, ``"leaky"`` or None.
        residual: optional tensor like ``x``, added after the activation.
        eps: variance floor.
        stats_state: ``(mean, var)`` float32 ``[N, C]`` from the previous frame.
        momentum: weight of the previous statistics in [0, 1]; None disables smoothing.

    Returns:
        ``y`` like ``x`` (same dtype), or ``(y, (mean, var))`` when ``momentum`` is given.

    Shape:
        x, residual, y: ``[N, C, H, W]``; gamma, beta: ``[S, C]``; state tensors ``[N, C]``.
    """
    check_norm_args(x, gamma, beta, style_idx, act, residual, eps, stats_state, momentum)
    n = x.shape[0]
    g, b = style_rows(gamma, beta, style_idx, n)  # [N, C]
    xf = x.float()
    mean = xf.mean(dim=(2, 3))  # [N, C]
    var = xf.var(dim=(2, 3), unbiased=False)
    if momentum is not None and stats_state is not None:
        mean = momentum * stats_state[0] + (1.0 - momentum) * mean
        var = momentum * stats_state[1] + (1.0 - momentum) * var
    y = (xf - mean[:, :, None, None]) * torch.rsqrt(var + eps)[:, :, None, None]
    y = _affine_act_residual(y, g, b, act, residual.float() if residual is not None else None).to(x.dtype)
    if momentum is not None:
        return y, (mean, var)
    return y


def norm_rows(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, act: str | None,
              residual: torch.Tensor | None, eps: float) -> torch.Tensor:
    """:func:`cond_instance_norm` without smoothing, for per-sample rows ``gamma``/``beta`` ``[N, C]``.

    The op every ``CondInstanceNorm`` layer of a student runs unless a backend installs another
    (``realtime.student.set_norm_impl``; that is its signature). It runs once per layer per frame, so it
    skips the argument checks and uses ``F.instance_norm``, which ``torch.compile`` and the ONNX export
    turn into one fused op; float32 input (the CPU path) is never copied.

    Shape:
        x, residual, y: ``[N, C, H, W]``; gamma, beta: ``[N, C]``.
    """
    if x.dtype != torch.float32:
        res32 = residual.float() if residual is not None else None
        return norm_rows(x.float(), gamma.float(), beta.float(), act, res32, eps).to(x.dtype)
    return _affine_act_residual(F.instance_norm(x, eps=eps), _f32(gamma), _f32(beta), act, residual)


def _f32(t: torch.Tensor) -> torch.Tensor:
    """``t`` as float32, without a traced cast when it already is (the ONNX export stays cast-free)."""
    return t if t.dtype == torch.float32 else t.float()


def _affine_act_residual(y: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, act: str | None,
                         residual: torch.Tensor | None) -> torch.Tensor:
    """``act(y * gamma_n + beta_n) + residual`` on a normalised ``y``; all float32 (rows ``[N, C]``)."""
    y = y * gamma[:, :, None, None] + beta[:, :, None, None]
    if act == "relu":
        y = F.relu(y)
    elif act == "leaky":
        y = F.leaky_relu(y, LEAKY_SLOPE)
    if residual is not None:
        y = y + residual
    return y


# ----------------------------------------------------------------------------------------------
# Compositing
# ----------------------------------------------------------------------------------------------

def resize_bilinear(img: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """Bilinear resize with half-pixel centres, edge clamp, no antialias, in float32.

    Shape:
        img: ``[C, h, w]`` or ``[N, C, h, w]``; output ``[..., out_h, out_w]``.
    """
    x = img.float()
    squeeze = x.dim() == 3
    if squeeze:
        x = x[None]
    if x.shape[-2:] != (out_h, out_w):
        x = F.interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=False, antialias=False)
    return x[0] if squeeze else x


def feather_alpha(m: torch.Tensor, threshold: float, feather: float) -> torch.Tensor:
    """Person alpha from mask probabilities: smoothstep around ``threshold`` (hard step at 0)."""
    if feather <= 0.0:
        return (m >= threshold).float()
    t = ((m - (threshold - feather)) / (2.0 * feather)).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def frame_to_rgb(frame: torch.Tensor) -> torch.Tensor:
    """uint8 BGR ``[H, W, 3]`` → float32 RGB ``[3, H, W]`` in [0, 1]."""
    return frame.flip(-1).permute(2, 0, 1).float() / 255.0


def rgb_to_frame(rgb: torch.Tensor) -> torch.Tensor:
    """float RGB ``[3, H, W]`` in [0, 1] → uint8 BGR ``[H, W, 3]`` (round to nearest, clamp)."""
    return torch.round(rgb * 255.0).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).flip(-1).contiguous()


def prepare(frame: Any, out_h: int, out_w: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 BGR frame → float RGB network input, resized bilinearly.

    Args:
        frame: uint8 BGR ``[H, W, 3]`` (torch tensor or numpy array).
        out_h, out_w: output size.
        dtype: torch.float16 or torch.float32.

    Returns:
        RGB in [0, 1] (value / 255).

    Shape:
        frame: ``[H, W, 3]`` uint8 BGR; output: ``[1, 3, out_h, out_w]``.
    """
    f = check_frame("frame", frame)
    out_h, out_w = check_size("out_h", out_h), check_size("out_w", out_w)
    check_out_dtype("dtype", dtype)
    return resize_bilinear(frame_to_rgb(f), out_h, out_w)[None].to(dtype)


def color_map(m: Any, rgb: torch.Tensor) -> torch.Tensor:
    """A quadratic colour map on float RGB ``[3, H, W]``: per output channel ``c``,
    ``Σ_k m[k, c]·term_k`` over the terms ``(r, g, b, r², g², b², rg, gb, rb, 1)``, clamped to [0, 1].

    Shape:
        m: float32 ``[10, 3]``; rgb: ``[3, H, W]``; returns ``[3, H, W]``.
    """
    m = check_map("map", m, rgb.device)
    r, g, b = rgb[0], rgb[1], rgb[2]
    terms = torch.stack([r, g, b, r * r, g * g, b * b, r * g, g * b, r * b, torch.ones_like(r)])  # [10, H, W]
    return torch.einsum("khw,kc->chw", terms.float(), m).clamp(0.0, 1.0)


def _treatment(name: str, t: Any, mode: int, orig: torch.Tensor) -> torch.Tensor:
    """A treatment at the output size: None → orig; image → sample; delta → orig + sample; map → map(orig)."""
    if t is None:
        return orig
    if mode == 2:
        return color_map(t, orig)
    img = check_image(name, t, orig.device)
    s = resize_bilinear(img[0], orig.shape[1], orig.shape[2])  # [3, H, W]
    return (orig + s).clamp(0.0, 1.0) if mode == 1 else s


def composite(frame: Any, mask: Any, fg: Any = None, bg: Any = None, fg_mode: Any = "image",
              bg_mode: Any = "image", threshold: float = 0.5, feather: float = 0.1,
              strength: float = 1.0) -> torch.Tensor:
    """Blend a person treatment and a background treatment over a frame, by a low-res mask.

    ``m`` = mask sampled bilinearly at each pixel; ``alpha`` = feathered step of ``m`` (see the
    module docstring); ``blend = alpha * fg + (1 - alpha) * bg``;
    ``out = orig + strength * (blend - orig)``; uint8 BGR with rounding.

    Args:
        frame: uint8 BGR ``[H, W, 3]``, the original.
        mask: float ``[h, w]`` person probability in [0, 1], any size.
        fg, bg: float RGB ``[1, 3, Hf, Wf]`` of any size (1×1 = a flat colour), or None for the
            original pixel.
        fg_mode, bg_mode: ``"image"`` (0): use the sample; ``"delta"`` (1): original + sample,
            clamped to [0, 1]; ``"map"`` (2): the treatment is a colour map's float32 ``[10, 3]``
            coefficients applied to the original (:func:`color_map`).
        threshold: mask level where alpha = 0.5, in [0, 1].
        feather: half-width of the smoothstep, >= 0 (0 = hard edge).
        strength: mix with the original, in [0, 1].

    Returns:
        uint8 BGR frame.

    Shape:
        frame, output: ``[H, W, 3]``; mask: ``[h, w]``; fg: ``[1, 3, Hf, Wf]``; bg: ``[1, 3, Hb, Wb]``.
    """
    f = check_frame("frame", frame)
    m_lr = check_mask("mask", mask, f.device)
    fg_mode, bg_mode = check_mode("fg_mode", fg_mode), check_mode("bg_mode", bg_mode)
    threshold = check_range("threshold", threshold, 0.0, 1.0)
    feather = check_range("feather", feather, 0.0, 1.0)
    strength = check_range("strength", strength, 0.0, 1.0)
    orig = frame_to_rgb(f)  # [3, H, W]
    h, w = orig.shape[1:]
    m = resize_bilinear(m_lr[None], h, w)[0]  # [H, W]
    alpha = feather_alpha(m, threshold, feather)
    fg_rgb = _treatment("fg", fg, fg_mode, orig)
    bg_rgb = _treatment("bg", bg, bg_mode, orig)
    blend = alpha * fg_rgb + (1.0 - alpha) * bg_rgb
    out = orig + strength * (blend - orig)
    return rgb_to_frame(out)


def gaussian_taps(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian, radius ``ceil(3 sigma)`` (``[1.0]`` for sigma 0), float32 ``[2r + 1]``."""
    r = int(math.ceil(3.0 * sigma))
    if r == 0:
        return torch.ones(1)
    k = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-(k * k) / (2.0 * sigma * sigma))
    return (g / g.sum()).float()


def _blur_1d(x: torch.Tensor, taps: torch.Tensor, dim: int) -> torch.Tensor:
    """Correlate along ``dim`` with edge-clamped (replicate) borders."""
    r = (taps.numel() - 1) // 2
    if r == 0:
        return x * taps[0]
    n = x.shape[dim]
    out = torch.zeros_like(x)
    for i, wk in enumerate(taps.tolist()):
        idx = (torch.arange(n, device=x.device) + (i - r)).clamp(0, n - 1)
        out += wk * x.index_select(dim, idx)
    return out


def masked_blur(image: Any, mask: Any, sigma: float, threshold: float = 0.5, feather: float = 0.1,
                out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Gaussian blur of the background that the person does not bleed into.

    ``out = G * (img * w) / max(G * w, 1e-4)`` with ``w = 1 - alpha``, ``alpha`` exactly as in
    :func:`composite` (same ``threshold``/``feather``), so pixels that compositing treats as
    person contribute nothing to the blurred background. ``G`` is a separable Gaussian of
    radius ``ceil(3 sigma)`` with edge clamp; neighbourhoods that are all person come out 0
    (they are covered by the person treatment anyway).

    Args:
        image: uint8 BGR frame ``[H, W, 3]`` or float RGB ``[1, 3, H, W]``.
        mask: float ``[h, w]`` person probability, any size (sampled bilinearly to H×W).
        sigma: Gaussian sigma in pixels of ``image``, in [0, 64].
        threshold, feather: as in :func:`composite`.
        out_dtype: torch.float16 or torch.float32.

    Returns:
        float RGB image — a ``bg`` treatment for :func:`composite`.

    Shape:
        image: ``[H, W, 3]`` uint8 or ``[1, 3, H, W]`` float; mask: ``[h, w]``; output: ``[1, 3, H, W]``.
    """
    img = _image_rgb(image)  # [3, H, W] float32
    m_lr = check_mask("mask", mask, img.device)
    sigma = check_range("sigma", sigma, 0.0, MAX_SIGMA)
    threshold = check_range("threshold", threshold, 0.0, 1.0)
    feather = check_range("feather", feather, 0.0, 1.0)
    check_out_dtype("out_dtype", out_dtype)
    h, w = img.shape[1:]
    wgt = 1.0 - feather_alpha(resize_bilinear(m_lr[None], h, w)[0], threshold, feather)  # [H, W]
    taps = gaussian_taps(sigma).to(img.device)
    stack = torch.cat([img * wgt, wgt[None]], 0)  # [4, H, W]
    stack = _blur_1d(_blur_1d(stack, taps, 2), taps, 1)
    out = stack[:3] / stack[3:].clamp_min(BLUR_EPS)
    return out[None].to(out_dtype)


def _image_rgb(image: Any) -> torch.Tensor:
    """A frame or float image as float32 RGB ``[3, H, W]``."""
    t = as_tensor("image", image)
    if t.dtype == torch.uint8:
        return frame_to_rgb(check_frame("image", t))
    return check_image("image", t)[0].float()


# ----------------------------------------------------------------------------------------------
# 3D LUT looks
# ----------------------------------------------------------------------------------------------

def _lerp01(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``a (1 - t) + b t``: exactly ``a`` at t = 0 and ``b`` at t = 1."""
    return a * (1.0 - t) + b * t


def lut_sample(lut: Any, rgb: torch.Tensor) -> torch.Tensor:
    """Trilinear lookup of float RGB in a 3D LUT (see the module docstring), in float32.

    Values of ``rgb`` outside [0, 1] are clamped to the cube's faces.

    Shape:
        lut: float32 ``[3, D, D, D]`` indexed ``[c, r, g, b]``; rgb: ``[3, H, W]``; returns ``[3, H, W]``.
    """
    lut = check_lut("lut", lut, rgb.device)
    d = lut.shape[-1]
    cells = []
    for v in rgb.float().clamp(0.0, 1.0):  # r, g, b planes [H, W]
        pos = v * float(d - 1)
        i0 = pos.floor().clamp(max=d - 2)
        cells.append((i0.long(), pos - i0))
    (ir, tr), (ig, tg), (ib, tb) = cells
    flat = lut.reshape(3, -1)

    def at(dr: int, dg: int, db: int) -> torch.Tensor:  # the lattice values at one corner, [3, H, W]
        idx = ((ir + dr) * d + (ig + dg)) * d + (ib + db)
        return flat[:, idx.reshape(-1)].reshape(3, *idx.shape)

    v00 = _lerp01(at(0, 0, 0), at(0, 0, 1), tb)
    v01 = _lerp01(at(0, 1, 0), at(0, 1, 1), tb)
    v10 = _lerp01(at(1, 0, 0), at(1, 0, 1), tb)
    v11 = _lerp01(at(1, 1, 0), at(1, 1, 1), tb)
    return _lerp01(_lerp01(v00, v01, tg), _lerp01(v10, v11, tg), tr)


def lut_delta(frame: Any, lut: Any, scale: float = 1.0, out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The change a 3D LUT look makes to a frame: ``scale · (LUT(x) − x)``, ``x`` = the frame's RGB / 255.

    A ``delta`` treatment for :func:`composite` at the frame's own size, to which other changes
    (another look, an upsampled student's change) can be added first.

    Args:
        frame: uint8 BGR ``[H, W, 3]``.
        lut: float32 ``[3, D, D, D]`` indexed ``[c, r, g, b]`` (:func:`lut_sample`), on the frame's device.
        scale: weight of the look (its styles' share of the mix), finite.
        out_dtype: torch.float16 or torch.float32.

    Shape:
        frame: ``[H, W, 3]``; lut: ``[3, D, D, D]``; output: ``[1, 3, H, W]`` RGB.
    """
    f = check_frame("frame", frame)
    lut = check_lut("lut", lut, f.device)
    scale = check_finite("scale", scale)
    check_out_dtype("out_dtype", out_dtype)
    x = frame_to_rgb(f)  # [3, H, W]
    return ((lut_sample(lut, x) - x) * scale)[None].to(out_dtype)
