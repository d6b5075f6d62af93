"""Fused conditional instance norm in Triton.

One kernel computes the per-(sample, channel) statistics in float32, normalises, applies the
per-sample style affine (a row of the bank, or a blend of rows), the activation and the
residual add, and optionally smooths the statistics over frames. The unfused torch path
(``instance_norm`` → ``* gamma`` → ``+ beta`` → activation → ``+ residual``) moves the feature
map through memory ~11 times; this kernel moves it 3–4 times (see :mod:`kernels.bench`).

Parallelisation: one program per (sample, channel) plane, looping over H×W in ``BLOCK``
tiles (a plane that fits in one tile is read once, otherwise twice: statistics, then output).
When there are too few planes to fill the GPU (e.g. batch 1, 32 channels at 1080p) each plane
is split over ``SPLIT`` programs and a small statistics kernel runs first; the second kernel
still fuses everything else.

Statistics use the shifted-data sums ``Σ(x - K)``, ``Σ(x - K)²`` with ``K`` the plane's first
element, which avoids the cancellation of the naive sum of squares when the mean is large
compared with the spread, and lets split partial sums combine by plain addition.

Import this module only after deciding on ``TRITON_INTERPRET`` (the interpreter reads it at
import); :mod:`kernels.dispatch` does that.
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

from kernels._checks import check_norm_args
from kernels.reference import NormState

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

# The interpreter runs every config it is given; keep it to one small tile so both the
# one-tile and the looping code paths are exercised by small test shapes.
if INTERPRET:
    _CONFIGS = [triton.Config({"BLOCK": 64}, num_warps=1)]
else:
    _CONFIGS = [triton.Config({"BLOCK": b}, num_warps=w)
                for b, w in ((512, 4), (1024, 4), (2048, 8), (4096, 8), (8192, 16))]

_ACT = {None: 0, "relu": 1, "leaky": 2}


@triton.jit
def _affine_row(gamma_ptr, beta_ptr, sel_ptr, n, c, S,
                stride_gs, stride_gc, stride_bs, stride_bc, stride_wn, stride_ws,
                SEL_MODE: tl.constexpr):
    """Style affine (g, b) of sample n, channel c, in float32."""
    if SEL_MODE == 0:  # gamma/beta are already per-sample rows [N, C]
        g = tl.load(gamma_ptr + n * stride_gs + c * stride_gc).to(tl.float32)
        b = tl.load(beta_ptr + n * stride_bs + c * stride_bc).to(tl.float32)
    elif SEL_MODE == 1:  # one style index per sample
        s = tl.load(sel_ptr + n * stride_wn).to(tl.int64)
        g = tl.load(gamma_ptr + s * stride_gs + c * stride_gc).to(tl.float32)
        b = tl.load(beta_ptr + s * stride_bs + c * stride_bc).to(tl.float32)
    else:  # blend weights [N, S]: a cross-fade between styles
        g = 0.0
        b = 0.0
        for s in range(0, S):
            wgt = tl.load(sel_ptr + n * stride_wn + s * stride_ws).to(tl.float32)
            g += wgt * tl.load(gamma_ptr + s * stride_gs + c * stride_gc).to(tl.float32)
            b += wgt * tl.load(beta_ptr + s * stride_bs + c * stride_bc).to(tl.float32)
    return g, b


@triton.jit
def _cin_stats_kernel(
    x_ptr,        # input [N, C, H, W]; each plane contiguous, planes at (stride_xn, stride_xc)
    part_ptr,     # out: float32 [N*C, SPLIT, 2] partial (Σ(x-K), Σ(x-K)²) with K = plane[0]
    C, HW, CHUNK, SPLIT,
    stride_xn, stride_xc,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    sid = tl.program_id(1)
    n = pid // C
    c = pid % C
    base = x_ptr + n.to(tl.int64) * stride_xn + c.to(tl.int64) * stride_xc
    k = tl.load(base).to(tl.float32)
    lo = sid * CHUNK
    hi = tl.minimum(lo + CHUNK, HW)
    acc1 = tl.zeros([BLOCK], dtype=tl.float32)
    acc2 = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(lo, hi, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        msk = offs < hi
        v = tl.where(msk, tl.load(base + offs, mask=msk, other=0.0).to(tl.float32) - k, 0.0)
        acc1 += v
        acc2 += v * v
    out = part_ptr + (pid.to(tl.int64) * SPLIT + sid) * 2
    tl.store(out, tl.sum(acc1, axis=0))
    tl.store(out + 1, tl.sum(acc2, axis=0))


@triton.jit
def _cin_fused_kernel(
    x_ptr,        # input [N, C, H, W]; each plane contiguous, planes at (stride_xn, stride_xc)
    y_ptr,        # out: contiguous [N, C, H, W], dtype of x
    res_ptr,      # residual like x (planes at stride_rn, stride_rc); unused unless HAS_RES
    gamma_ptr,    # style bank [S, C] (or rows [N, C] when SEL_MODE == 0), any float dtype
    beta_ptr,     # like gamma
    sel_ptr,      # SEL_MODE 1: int indices [N]; 2: float weights [N, S]; 0: unused
    part_ptr,     # float32 [N*C, SPLIT, 2] partial sums from _cin_stats_kernel (SPLIT > 1)
    mean_in_ptr,  # float32 [N, C] previous smoothed mean (HAS_STATE_IN)
    var_in_ptr,   # float32 [N, C] previous smoothed variance (HAS_STATE_IN)
    mean_out_ptr,  # out: float32 [N, C] statistics used (WRITE_STATE)
    var_out_ptr,   # out: float32 [N, C]
    C, HW, S, CHUNK, SPLIT,
    stride_xn, stride_xc, stride_rn, stride_rc,
    stride_gs, stride_gc, stride_bs, stride_bc, stride_wn, stride_ws,
    eps, momentum,
    SEL_MODE: tl.constexpr, ACT: tl.constexpr, HAS_RES: tl.constexpr,
    HAS_STATE_IN: tl.constexpr, WRITE_STATE: tl.constexpr, SPLIT_P2: tl.constexpr,
    ONE_TILE: tl.constexpr, BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    sid = tl.program_id(1)
    n = pid // C
    c = pid % C
    base = x_ptr + n.to(tl.int64) * stride_xn + c.to(tl.int64) * stride_xc
    k = tl.load(base).to(tl.float32)
    hw_f = HW * 1.0

    # ---- statistics (float32)
    if ONE_TILE:  # the whole plane fits in one tile: read it once and keep it in registers
        offs1 = tl.arange(0, BLOCK)
        msk1 = offs1 < HW
        x1 = tl.load(base + offs1, mask=msk1, other=0.0).to(tl.float32)
        v = tl.where(msk1, x1 - k, 0.0)
        s1 = tl.sum(v, axis=0)
        s2 = tl.sum(v * v, axis=0)
    elif SPLIT == 1:
        acc1 = tl.zeros([BLOCK], dtype=tl.float32)
        acc2 = tl.zeros([BLOCK], dtype=tl.float32)
        for start in range(0, HW, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            msk = offs < HW
            v = tl.where(msk, tl.load(base + offs, mask=msk, other=0.0).to(tl.float32) - k, 0.0)
            acc1 += v
            acc2 += v * v
        s1 = tl.sum(acc1, axis=0)
        s2 = tl.sum(acc2, axis=0)
    else:
        po = tl.arange(0, SPLIT_P2)
        pm = po < SPLIT
        pp = part_ptr + (pid.to(tl.int64) * SPLIT + po) * 2
        s1 = tl.sum(tl.load(pp, mask=pm, other=0.0), axis=0)
        s2 = tl.sum(tl.load(pp + 1, mask=pm, other=0.0), axis=0)
    d = s1 / hw_f
    mean = k + d
    var = tl.maximum(s2 / hw_f - d * d, 0.0)  # biased, like F.instance_norm
    if HAS_STATE_IN:  # temporal smoothing of the statistics across frames
        mean = momentum * tl.load(mean_in_ptr + pid) + (1.0 - momentum) * mean
        var = momentum * tl.load(var_in_ptr + pid) + (1.0 - momentum) * var
    if WRITE_STATE:
        if sid == 0:
            tl.store(mean_out_ptr + pid, mean)
            tl.store(var_out_ptr + pid, var)

    g, b = _affine_row(gamma_ptr, beta_ptr, sel_ptr, n, c, S, stride_gs, stride_gc,
                       stride_bs, stride_bc, stride_wn, stride_ws, SEL_MODE)
    scale = g * (1.0 / tl.sqrt(var + eps))

    # ---- normalise + affine + activation + residual, one write
    ybase = y_ptr + pid.to(tl.int64) * HW
    rbase = res_ptr + n.to(tl.int64) * stride_rn + c.to(tl.int64) * stride_rc
    lo = sid * CHUNK
    hi = tl.minimum(lo + CHUNK, HW)
    if ONE_TILE:
        y = (x1 - mean) * scale + b
        if ACT == 1:
            y = tl.maximum(y, 0.0)
        elif ACT == 2:
            y = tl.where(y >= 0.0, y, 0.2 * y)
        if HAS_RES:
            y += tl.load(rbase + offs1, mask=msk1, other=0.0).to(tl.float32)
        tl.store(ybase + offs1, y.to(y_ptr.dtype.element_ty), mask=msk1)
    else:
        for start in range(lo, hi, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            msk = offs < hi
            xv = tl.load(base + offs, mask=msk, other=0.0).to(tl.float32)
            y = (xv - mean) * scale + b
            if ACT == 1:
                y = tl.maximum(y, 0.0)
            elif ACT == 2:
                y = tl.where(y >= 0.0, y, 0.2 * y)
            if HAS_RES:
                y += tl.load(rbase + offs, mask=msk, other=0.0).to(tl.float32)
            tl.store(ybase + offs, y.to(y_ptr.dtype.element_ty), mask=msk)


_stats = triton.autotune(configs=_CONFIGS, key=["HW", "CHUNK"])(_cin_stats_kernel)
_fused = triton.autotune(configs=_CONFIGS, key=["HW", "CHUNK", "SPLIT"])(
    triton.heuristics({"ONE_TILE": lambda a: a["SPLIT"] == 1 and a["HW"] <= a["BLOCK"]})(_cin_fused_kernel))


def _plane_view(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself if each [H, W] plane is contiguous (any N/C strides), else a contiguous copy."""
    h, w = t.shape[2:]
    if (t.stride(3) == 1 or w == 1) and (t.stride(2) == w or h == 1):
        return t
    return t.contiguous()


def _num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 8


def choose_split(planes: int, hw: int, device: torch.device) -> int:
    """Programs per plane: 1 unless there are too few planes to fill the GPU and planes are big."""
    target = 4 * _num_sms(device)  # a few programs per SM to hide memory latency
    min_chunk = 16384  # smaller chunks make the statistics kernel launch-bound
    if planes >= target or hw < 2 * min_chunk:
        return 1
    return max(1, min(math.ceil(target / planes), hw // min_chunk))


def cond_instance_norm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                       style_idx: torch.Tensor | None = None, act: str | None = "relu",
                       residual: torch.Tensor | None = None, eps: float = 1e-5,
                       stats_state: NormState | None = None, momentum: float | None = None,
                       *, split: int | None = None) -> torch.Tensor | tuple[torch.Tensor, NormState]:
    """Fused conditional instance norm; same contract as :func:`kernels.reference.cond_instance_norm`.

    Args:
        x: ``[N, C, H, W]`` fp16/bf16/fp32 on CUDA (or CPU under ``TRITON_INTERPRET=1``).
        gamma, beta: style bank ``[S, C]``, or per-sample rows ``[N, C]`` with ``style_idx=None``.
        style_idx: int ``[N]`` indices, float ``[N, S]`` blend weights, or None.
        act: ``"relu"``, ``"leaky"`` (slope 0.2) or None.
        residual: optional tensor like ``x``, added after the activation.
        eps: variance floor.
        stats_state: ``(mean, var)`` float32 ``[N, C]`` from the previous frame.
        momentum: weight of the previous statistics; None disables smoothing.
        split: programs per plane (None = chosen from the GPU size); for tests.

    Returns:
        ``y`` (contiguous, dtype of ``x``), or ``(y, (mean, var))`` when ``momentum`` is given.

    Shape:
        x, residual, y: ``[N, C, H, W]``; gamma, beta: ``[S, C]``; state tensors ``[N, C]``.
    """
    check_norm_args(x, gamma, beta, style_idx, act, residual, eps, stats_state, momentum)
    n, c, h, w = x.shape
    hw, planes = h * w, n * c
    xv = _plane_view(x)
    rv = _plane_view(residual) if residual is not None else xv
    y = torch.empty((n, c, h, w), dtype=x.dtype, device=x.device)
    if style_idx is None:
        sel_mode, sel, swn, sws = 0, gamma, 0, 0
    elif style_idx.is_floating_point():
        sel_mode, sel, (swn, sws) = 2, style_idx, style_idx.stride()
    else:
        sel_mode, sel, swn, sws = 1, style_idx, style_idx.stride(0), 0
    smooth = momentum is not None
    if smooth:
        mean_out = torch.empty((n, c), dtype=torch.float32, device=x.device)
        var_out = torch.empty_like(mean_out)
    else:
        mean_out = var_out = y
    has_in = stats_state is not None
    mean_in, var_in = ((stats_state[0].contiguous(), stats_state[1].contiguous()) if has_in
                       else (mean_out, var_out))
    nsplit = split if split is not None else choose_split(planes, hw, x.device)
    nsplit = max(1, min(int(nsplit), hw))
    chunk = math.ceil(hw / nsplit)
    nsplit = math.ceil(hw / chunk)  # no empty programs
    if nsplit > 1:
        part = torch.empty((planes, nsplit, 2), dtype=torch.float32, device=x.device)
        _stats[(planes, nsplit)](xv, part, c, hw, chunk, nsplit, xv.stride(0), xv.stride(1))
    else:
        part = y
    _fused[(planes, nsplit)](
        xv, y, rv, gamma, beta, sel, part, mean_in, var_in, mean_out, var_out,
        c, hw, gamma.shape[0], chunk, nsplit,
        xv.stride(0), xv.stride(1), rv.stride(0), rv.stride(1),
        gamma.stride(0), gamma.stride(1), beta.stride(0), beta.stride(1), swn, sws,
        float(eps), float(momentum or 0.0),
        SEL_MODE=sel_mode, ACT=_ACT[act], HAS_RES=residual is not None,
        HAS_STATE_IN=has_in, WRITE_STATE=smooth, SPLIT_P2=triton.next_power_of_2(nsplit),
    )
    if smooth:
        return y, (mean_out, var_out)
    return y


def norm_rows(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, act: str | None,
              residual: torch.Tensor | None, eps: float) -> torch.Tensor:
    """Adapter for ``realtime.student.set_norm_impl``: per-sample rows ``gamma``/``beta`` ``[N, C]``.

    Shape:
        x, residual, output: ``[N, C, H, W]``; gamma, beta: ``[N, C]``.
    """
    return cond_instance_norm(x, gamma, beta, None, act, residual, eps)
