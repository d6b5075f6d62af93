"""Fused conditional instance norm in Triton.

One kernel computes the per-(sample, channel) statistics in float32, normalises, applies the
per-sample style affine (a row of the bank, or a blend of rows), the activation and the
residual add, and optionally smooths the statistics over frames. The unfused torch path
(``instance_norm`` → ``* gamma`` → ``+ beta`` → activation → ``+ residual``) moves the feature
map through memory 8–11 times; this kernel moves it 3–4 times (counted in :mod:`kernels.benchmarks`).

Parallelisation: one program per (sample, block of ``BLOCK_C`` channels), looping over H×W in
tiles of ``BLOCK`` elements. NCHW input uses ``BLOCK_C = 1`` (tiles run along the contiguous
H×W plane); channels_last input uses up to 32 channels per tile (tiles run along the contiguous
channel axis), so both layouts are read in place with coalesced loads. A plane that fits in one
tile is read once, otherwise twice (statistics, then output). When there are too few programs
to fill the GPU (batch 1, 32 channels at 1080p) each plane is split over ``SPLIT`` programs and
a small statistics kernel runs first; the second kernel still fuses everything else.

Statistics use the shifted-data sums ``Σ(x - K)``, ``Σ(x - K)²`` with ``K`` the plane's first
element: no cancellation of the naive sum of squares when the mean is large compared with the
spread, and split partial sums combine by plain addition.

``TRITON_INTERPRET=1`` (CPU tensors, for tests) must be set before triton is first imported:
Triton decides between compiling and interpreting when its standard library and these kernels
are decorated. ``tests/kernels`` therefore runs the interpreter tests in a child process.
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

from kernels._checks import check_norm_args
from kernels.errors import KernelInputError
from kernels.reference import LEAKY_SLOPE, NormState

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

# The interpreter runs every config it is given; keep it to one small tile so both the
# one-tile and the looping code paths are exercised by small test shapes.
if INTERPRET:
    _CONFIGS = [triton.Config({"BLOCK": 64}, num_warps=1)]
else:
    _CONFIGS = [triton.Config({"BLOCK": b}, num_warps=w)
                for b, w in ((512, 4), (1024, 4), (2048, 8), (4096, 8), (8192, 16), (16384, 16))]
MAX_TILE = max(c.kwargs["BLOCK"] for c in _CONFIGS)  # elements one program holds in registers

_ACT = {None: 0, "relu": 1, "leaky": 2}
_LEAKY_SLOPE: tl.constexpr = tl.constexpr(LEAKY_SLOPE)  # one definition, in kernels.reference


@triton.jit
def _affine_rows(gamma_ptr, beta_ptr, sel_ptr, n, offs_c, cmask, S,
                 stride_gs, stride_gc, stride_bs, stride_bc, stride_wn, stride_ws,
                 SEL_MODE: tl.constexpr, BLOCK_C: tl.constexpr):
    """Style affine (g, b) of sample n for channels offs_c, float32 [BLOCK_C]."""
    if SEL_MODE == 0:  # gamma/beta are already per-sample rows [N, C]
        g = tl.load(gamma_ptr + n * stride_gs + offs_c * stride_gc, mask=cmask, other=0.0).to(tl.float32)
        b = tl.load(beta_ptr + n * stride_bs + offs_c * stride_bc, mask=cmask, other=0.0).to(tl.float32)
    elif SEL_MODE == 1:  # one style index per sample
        s = tl.load(sel_ptr + n * stride_wn).to(tl.int64)
        g = tl.load(gamma_ptr + s * stride_gs + offs_c * stride_gc, mask=cmask, other=0.0).to(tl.float32)
        b = tl.load(beta_ptr + s * stride_bs + offs_c * stride_bc, mask=cmask, other=0.0).to(tl.float32)
    else:  # blend weights [N, S]: a cross-fade between styles
        g = tl.zeros([BLOCK_C], dtype=tl.float32)
        b = tl.zeros([BLOCK_C], dtype=tl.float32)
        for s in range(0, S):
            wgt = tl.load(sel_ptr + n * stride_wn + s * stride_ws).to(tl.float32)
            g += wgt * tl.load(gamma_ptr + s * stride_gs + offs_c * stride_gc, mask=cmask, other=0.0).to(tl.float32)
            b += wgt * tl.load(beta_ptr + s * stride_bs + offs_c * stride_bc, mask=cmask, other=0.0).to(tl.float32)
    return g, b


@triton.jit
def _cin_stats_kernel(
    x_ptr,        # input [N, C, H, W]: element (n, c, hw) at n*stride_xn + c*stride_xc + hw*stride_xhw
    part_ptr,     # out: float32 [N*C, SPLIT, 2] partial (sum(x-K), sum((x-K)^2)), K = x[n, c, 0]
    C, HW, CHUNK, SPLIT,
    stride_xn, stride_xc, stride_xhw,
    BLOCK: tl.constexpr, BLOCK_C: tl.constexpr,
):
    BLOCK_HW: tl.constexpr = BLOCK // BLOCK_C
    pid = tl.program_id(0)
    sid = tl.program_id(1)
    ncb = tl.cdiv(C, BLOCK_C)
    n = pid // ncb
    offs_c = (pid % ncb) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = offs_c < C
    base = x_ptr + n.to(tl.int64) * stride_xn + offs_c.to(tl.int64)[None, :] * stride_xc  # [1, BLOCK_C]
    k = tl.load(base, mask=cmask[None, :], other=0.0).to(tl.float32)
    lo = sid * CHUNK
    hi = tl.minimum(lo + CHUNK, HW)
    acc1 = tl.zeros([BLOCK_HW, BLOCK_C], dtype=tl.float32)
    acc2 = tl.zeros([BLOCK_HW, BLOCK_C], dtype=tl.float32)
    for start in range(lo, hi, BLOCK_HW):
        offs = start + tl.arange(0, BLOCK_HW)
        msk = (offs < hi)[:, None] & cmask[None, :]
        xv = tl.load(base + offs.to(tl.int64)[:, None] * stride_xhw, mask=msk, other=0.0).to(tl.float32)
        v = tl.where(msk, xv - k, 0.0)
        acc1 += v
        acc2 += v * v
    out = part_ptr + ((n.to(tl.int64) * C + offs_c) * SPLIT + sid) * 2
    tl.store(out, tl.sum(acc1, axis=0), mask=cmask)
    tl.store(out + 1, tl.sum(acc2, axis=0), mask=cmask)


@triton.jit
def _cin_fused_kernel(
    x_ptr,        # input [N, C, H, W]: element (n, c, hw) at n*stride_xn + c*stride_xc + hw*stride_xhw
    y_ptr,        # out, dtype of x, strides (stride_yn, stride_yc, stride_yhw)
    res_ptr,      # residual like x, strides (stride_rn, stride_rc, stride_rhw); unused unless HAS_RES
    gamma_ptr,    # style bank [S, C] (or rows [N, C] when SEL_MODE == 0), any float dtype
    beta_ptr,     # like gamma
    sel_ptr,      # SEL_MODE 1: int indices [N]; 2: float weights [N, S]; 0: unused
    part_ptr,     # float32 [N*C, SPLIT, 2] partial sums from _cin_stats_kernel (SPLIT > 1)
    mean_in_ptr,  # float32 [N, C] previous smoothed mean (HAS_STATE_IN)
    var_in_ptr,   # float32 [N, C] previous smoothed variance (HAS_STATE_IN)
    mean_out_ptr,  # out: float32 [N, C] statistics used (WRITE_STATE)
    var_out_ptr,   # out: float32 [N, C]
    C, HW, S, CHUNK, SPLIT,
    stride_xn, stride_xc, stride_xhw, stride_yn, stride_yc, stride_yhw, stride_rn, stride_rc, stride_rhw,
    stride_gs, stride_gc, stride_bs, stride_bc, stride_wn, stride_ws,
    eps, momentum,
    SEL_MODE: tl.constexpr, ACT: tl.constexpr, HAS_RES: tl.constexpr,
    HAS_STATE_IN: tl.constexpr, WRITE_STATE: tl.constexpr, SPLIT_P2: tl.constexpr,
    ONE_TILE: tl.constexpr, BLOCK: tl.constexpr, BLOCK_C: tl.constexpr,
):
    BLOCK_HW: tl.constexpr = BLOCK // BLOCK_C
    pid = tl.program_id(0)
    sid = tl.program_id(1)
    ncb = tl.cdiv(C, BLOCK_C)
    n = pid // ncb
    n64 = n.to(tl.int64)
    offs_c = (pid % ncb) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = offs_c < C
    c64 = offs_c.to(tl.int64)[None, :]
    base = x_ptr + n64 * stride_xn + c64 * stride_xc  # [1, BLOCK_C]
    k = tl.load(base, mask=cmask[None, :], other=0.0).to(tl.float32)
    hw_f = HW * 1.0

    # ---- statistics (float32), per channel [BLOCK_C]
    if ONE_TILE:  # the whole plane fits in one tile: read it once and keep it in registers
        offs1 = tl.arange(0, BLOCK_HW)
        msk1 = (offs1 < HW)[:, None] & cmask[None, :]
        x1 = tl.load(base + offs1.to(tl.int64)[:, None] * stride_xhw, mask=msk1, other=0.0).to(tl.float32)
        v = tl.where(msk1, x1 - k, 0.0)
        s1 = tl.sum(v, axis=0)
        s2 = tl.sum(v * v, axis=0)
    elif SPLIT == 1:
        acc1 = tl.zeros([BLOCK_HW, BLOCK_C], dtype=tl.float32)
        acc2 = tl.zeros([BLOCK_HW, BLOCK_C], dtype=tl.float32)
        for start in range(0, HW, BLOCK_HW):
            offs = start + tl.arange(0, BLOCK_HW)
            msk = (offs < HW)[:, None] & cmask[None, :]
            xv = tl.load(base + offs.to(tl.int64)[:, None] * stride_xhw, mask=msk, other=0.0).to(tl.float32)
            v = tl.where(msk, xv - k, 0.0)
            acc1 += v
            acc2 += v * v
        s1 = tl.sum(acc1, axis=0)
        s2 = tl.sum(acc2, axis=0)
    else:
        po = tl.arange(0, SPLIT_P2)
        pm = (po < SPLIT)[:, None] & cmask[None, :]
        pp = part_ptr + ((n64 * C + c64) * SPLIT + po[:, None]) * 2  # [SPLIT_P2, BLOCK_C]
        s1 = tl.sum(tl.load(pp, mask=pm, other=0.0), axis=0)
        s2 = tl.sum(tl.load(pp + 1, mask=pm, other=0.0), axis=0)
    # The mean is kept as shift + offset: x - K is exact for x near K, so (x - K) - off keeps
    # precision that K + off, rounded to float32, would lose when |mean| >> std.
    kc = tl.reshape(k, [BLOCK_C])
    off = s1 / hw_f
    var = tl.maximum(s2 / hw_f - off * off, 0.0)  # biased, like F.instance_norm
    sidx = n64 * C + offs_c
    if HAS_STATE_IN:  # temporal smoothing of the statistics across frames
        prev = tl.load(mean_in_ptr + sidx, mask=cmask, other=0.0)
        off = momentum * (prev - kc) + (1.0 - momentum) * off
        var = momentum * tl.load(var_in_ptr + sidx, mask=cmask, other=0.0) + (1.0 - momentum) * var
    mean = kc + off
    if WRITE_STATE:
        if sid == 0:
            tl.store(mean_out_ptr + sidx, mean, mask=cmask)
            tl.store(var_out_ptr + sidx, var, mask=cmask)

    g, b = _affine_rows(gamma_ptr, beta_ptr, sel_ptr, n, offs_c, cmask, S, stride_gs, stride_gc,
                        stride_bs, stride_bc, stride_wn, stride_ws, SEL_MODE, BLOCK_C)
    scale = (g * (1.0 / tl.sqrt(var + eps)))[None, :]
    off2 = off[None, :]
    b2 = b[None, :]

    # ---- normalise + affine + activation + residual, one write
    ybase = y_ptr + n64 * stride_yn + c64 * stride_yc
    rbase = res_ptr + n64 * stride_rn + c64 * stride_rc
    if ONE_TILE:
        y = ((x1 - k) - off2) * scale + b2
        if ACT == 1:
            y = tl.maximum(y, 0.0)
        elif ACT == 2:
            y = tl.where(y >= 0.0, y, _LEAKY_SLOPE * y)
        if HAS_RES:
            y += tl.load(rbase + offs1.to(tl.int64)[:, None] * stride_rhw, mask=msk1, other=0.0).to(tl.float32)
        tl.store(ybase + offs1.to(tl.int64)[:, None] * stride_yhw, y.to(y_ptr.dtype.element_ty), mask=msk1)
    else:
        lo = sid * CHUNK
        hi = tl.minimum(lo + CHUNK, HW)
        for start in range(lo, hi, BLOCK_HW):
            offs = start + tl.arange(0, BLOCK_HW)
            o64 = offs.to(tl.int64)[:, None]
            msk = (offs < hi)[:, None] & cmask[None, :]
            xv = tl.load(base + o64 * stride_xhw, mask=msk, other=0.0).to(tl.float32)
            y = ((xv - k) - off2) * scale + b2
            if ACT == 1:
                y = tl.maximum(y, 0.0)
            elif ACT == 2:
                y = tl.where(y >= 0.0, y, _LEAKY_SLOPE * y)
            if HAS_RES:
                y += tl.load(rbase + o64 * stride_rhw, mask=msk, other=0.0).to(tl.float32)
            tl.store(ybase + o64 * stride_yhw, y.to(y_ptr.dtype.element_ty), mask=msk)


def _one_tile_configs(configs, nargs, **kwargs):
    """When a whole plane fits in some tile, time only those configs: x is then read once, not twice."""
    if nargs["SPLIT"] != 1:
        return configs
    fits = [c for c in configs if nargs["HW"] <= c.kwargs["BLOCK"] // kwargs["BLOCK_C"]]
    return fits or configs


_stats = triton.autotune(configs=_CONFIGS, key=["HW", "CHUNK", "BLOCK_C"])(_cin_stats_kernel)
_fused = triton.autotune(configs=_CONFIGS, key=["HW", "CHUNK", "SPLIT", "BLOCK_C"],
                         prune_configs_by={"early_config_prune": _one_tile_configs})(
    triton.heuristics({"ONE_TILE": lambda a: a["SPLIT"] == 1 and a["HW"] <= a["BLOCK"] // a["BLOCK_C"]})(
        _cin_fused_kernel))


def _flat_strides(t: torch.Tensor) -> tuple[int, int, int] | None:
    """(n, c, hw) strides when H and W fold into one index (NCHW- or NHWC-dense planes), else None."""
    h, w = t.shape[2:]
    sn, sc, sh, sw = t.stride()
    if h == 1:
        return sn, sc, sw
    if w == 1:
        return sn, sc, sh
    if sh == w * sw:
        return sn, sc, sw
    return None


def _layout(t: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """``t`` with foldable H×W (a contiguous copy otherwise) and its (n, c, hw) strides."""
    st = _flat_strides(t)
    if st is None:
        t = t.contiguous()
        st = _flat_strides(t)
    return t, st


def _num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 8


def choose_split(programs: int, hw: int, block_c: int, device: torch.device) -> int:
    """Programs per channel block: 1 unless there are too few to fill the GPU and planes are big."""
    target = 4 * _num_sms(device)  # a few programs per SM to hide memory latency
    # Each program should still stream >= 16K elements, or the statistics kernel is launch-bound.
    min_chunk = max(16384 // block_c, 64)
    if programs >= target or hw < 2 * min_chunk:
        return 1
    return max(1, min(math.ceil(target / programs), hw // min_chunk))


def cond_instance_norm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                       style_idx: torch.Tensor | None = None, act: str | None = "relu",
                       residual: torch.Tensor | None = None, eps: float = 1e-5,
                       stats_state: NormState | None = None, momentum: float | None = None,
                       *, split: int | None = None) -> torch.Tensor | tuple[torch.Tensor, NormState]:
    """Fused conditional instance norm; same contract as :func:`kernels.reference.cond_instance_norm`.

    NCHW and channels_last inputs are read in place (channels_last with tiles across channels,
    so loads stay coalesced) and the output keeps the input's memory format; other layouts are
    copied to contiguous first.

    Args:
        x: ``[N, C, H, W]`` fp16/bf16/fp32 on CUDA (or CPU under ``TRITON_INTERPRET=1``).
        gamma, beta: style bank ``[S, C]``, or per-sample rows ``[N, C]`` with ``style_idx=None``.
        style_idx: int ``[N]`` indices, float ``[N, S]`` blend weights, or None.
        act: ``"relu"``, ``"leaky"`` (slope 0.2) or None.
        residual: optional tensor like ``x``, added after the activation.
        eps: variance floor.
        stats_state: ``(mean, var)`` float32 ``[N, C]`` from the previous frame.
        momentum: weight of the previous statistics; None disables smoothing.
        split: programs per channel block (None = chosen from the GPU size); for tests.

    Returns:
        ``y`` (dtype of ``x``), or ``(y, (mean, var))`` when ``momentum`` is given.

    Shape:
        x, residual, y: ``[N, C, H, W]``; gamma, beta: ``[S, C]``; state tensors ``[N, C]``.
    """
    check_norm_args(x, gamma, beta, style_idx, act, residual, eps, stats_state, momentum)
    if x.device.type != "cuda" and not INTERPRET:
        raise KernelInputError(f"x: the Triton kernel needs a CUDA tensor (CPU tensors only under "
                               f"TRITON_INTERPRET=1), got {x.device}")
    n, c, h, w = x.shape
    hw = h * w
    xv, (sxn, sxc, sxhw) = _layout(x)
    # Tiles run along the unit-stride axis: H×W for NCHW, channels for channels_last.
    block_c = 1 if (sxhw == 1 or c == 1) else min(triton.next_power_of_2(c), 32)
    y = torch.empty_like(xv) if block_c > 1 else torch.empty((n, c, h, w), dtype=x.dtype, device=x.device)
    _, (syn, syc, syhw) = _layout(y)
    if residual is not None:
        rv, (srn, src, srhw) = _layout(residual)
    else:
        rv, (srn, src, srhw) = xv, (0, 0, 0)
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
    programs = n * triton.cdiv(c, block_c)
    nsplit = split if split is not None else choose_split(programs, hw, block_c, x.device)
    nsplit = max(1, min(int(nsplit), hw))
    chunk = math.ceil(hw / nsplit)
    nsplit = math.ceil(hw / chunk)  # no empty programs
    if nsplit > 1:
        part = torch.empty((n * c, nsplit, 2), dtype=torch.float32, device=x.device)
        _stats[(programs, nsplit)](xv, part, c, hw, chunk, nsplit, sxn, sxc, sxhw, BLOCK_C=block_c)
    else:
        part = y
    _fused[(programs, nsplit)](
        xv, y, rv, gamma, beta, sel, part, mean_in, var_in, mean_out, var_out,
        c, hw, gamma.shape[0], chunk, nsplit,
        sxn, sxc, sxhw, syn, syc, syhw, srn, src, srhw,
        gamma.stride(0), gamma.stride(1), beta.stride(0), beta.stride(1), swn, sws,
        float(eps), float(momentum or 0.0),
        SEL_MODE=sel_mode, ACT=_ACT[act], HAS_RES=residual is not None,
        HAS_STATE_IN=has_in, WRITE_STATE=smooth, SPLIT_P2=triton.next_power_of_2(nsplit), BLOCK_C=block_c,
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
