"""Benchmark the fused kernels against the unfused torch paths; write JSON.

    python -m kernels.benchmarks --json bench-kernels.json            # timings on a GPU, analytic anywhere
    python -m kernels.benchmarks --json out.json --device cpu --sizes 320x180 --reps 5   # CPU smoke run

**Analytic bytes** (any machine): the DRAM traffic per frame of each version. The unfused side
is *counted*, not estimated: the torch path runs on ``meta`` tensors under a dispatch hook that
adds up the bytes every aten op reads and writes (views move nothing; broadcast operands count
their real size). It is a lower bound for torch: it assumes each op reads its inputs once (e.g.
``instance_norm`` is counted as one read of ``x`` although its CUDA kernel reads it twice). The
fused side is the kernel's own traffic: every input read once, the output written once, plus a
second read of ``x`` in the norm when a plane does not fit in one tile (assumed to come from
DRAM, not L2). Workloads:

* ``norm``: the conditional-instance-norm layers of a width-16 CIN generator (encoder at 1/2 and
  1/4 scale, 4 residual blocks, decoder) on a 1080p frame, fp16. Unfused = ``F.instance_norm``
  → ``* gamma`` → ``+ beta`` → activation (→ ``+ residual``) as separate ops.
* ``composite``: 1080p uint8 frame, 256×256 float32 mask, person = stylization delta at half
  resolution (fp16), background = blurred image at quarter resolution (fp16); unfused =
  :func:`kernels.reference.composite`. ``composite_fullres_fp32`` is the least favourable case
  (both treatments full-resolution float32).
* ``lut_delta``: a LUT look's change on a 1080p frame, 33³ LUT, fp16 out; unfused = the float frame,
  ``grid_sample`` (as ``realtime.lut.apply_lut``), minus the frame, times the weight, cast to fp16.

**Timings** (CUDA only, or the reference on ``--device cpu``): providers ``reference`` (torch),
``triton`` (norm) and ``cupy`` (compositing, LUT change) at 720p, 1080p and 4K; each measurement has
warm-up, an L2 flush before every repetition, CUDA-event timing and quantiles.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from kernels import reference as ref
from kernels.provenance import provenance

SIZES = {"720p": (720, 1280), "1080p": (1080, 1920), "4k": (2160, 3840)}
TARGETS = {"norm": 2.5, "composite": 3.0}
FUSED_MAX_TILE = 16384  # = kernels.triton_norm.MAX_TILE (checked by a test): planes that fit are read once
MASK_HW = (256, 256)
LUT_DIM = 33  # the larger lattice the looks use
LUT_SCALE = 0.7  # the look's share of a mix


# ---------------------------------------------------------------------------------------------
# Byte counting
# ---------------------------------------------------------------------------------------------

def footprint(t: torch.Tensor) -> int:
    """Bytes a kernel must touch for ``t``: broadcast (stride-0) dimensions count once."""
    n = 1
    for size, stride in zip(t.shape, t.stride()):
        if stride != 0:
            n *= size
    return n * t.element_size()


class ByteCounter(TorchDispatchMode):
    """Adds up bytes read and written by every aten op run under it (views and factories excluded)."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0
        self.ops: list[tuple[str, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        rets = func._schema.returns
        is_view = any(r.alias_info is not None and not r.alias_info.is_write for r in rets)
        ins = [t for t in tree_flatten((args, kwargs or {}))[0] if isinstance(t, torch.Tensor)]
        if is_view or not ins:  # views move no data; factories (empty) only allocate
            return out
        outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        moved = sum(footprint(t) for t in ins) + sum(footprint(t) for t in outs)
        self.bytes += moved
        self.ops.append((str(func), moved))
        return out


def count_bytes(fn: Callable[[], Any]) -> int:
    with ByteCounter() as counter:
        fn()
    return counter.bytes


# ---------------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------------

def norm_layers(h: int, w: int, width: int = 16, blocks: int = 4) -> list[dict]:
    """The CIN layers of a width-``width`` encoder/residual/decoder generator on an h×w frame."""
    h2, w2, h4, w4 = math.ceil(h / 2), math.ceil(w / 2), math.ceil(h / 4), math.ceil(w / 4)
    layers = [dict(shape=(1, 2 * width, h2, w2), act="relu", residual=False),
              dict(shape=(1, 4 * width, h4, w4), act="relu", residual=False)]
    for _ in range(blocks):
        layers += [dict(shape=(1, 4 * width, h4, w4), act="relu", residual=False),
                   dict(shape=(1, 4 * width, h4, w4), act=None, residual=True)]
    layers.append(dict(shape=(1, 2 * width, h2, w2), act="relu", residual=False))
    return layers


def unfused_norm(x, gamma, beta, act, residual, eps=1e-5):
    """The torch path the fused kernel replaces: separate instance_norm, affine, activation, residual."""
    y = F.instance_norm(x, eps=eps)
    y = y * gamma[:, :, None, None]
    y = y + beta[:, :, None, None]
    if act == "relu":
        y = F.relu(y)
    elif act == "leaky":
        y = F.leaky_relu(y, ref.LEAKY_SLOPE)
    if residual is not None:
        y = y + residual
    return y


def _norm_inputs(layer: dict, device, dtype=torch.float16, make=torch.empty, channels_last: bool = False):
    n, c = layer["shape"][:2]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = make(layer["shape"], device=device, dtype=dtype).contiguous(memory_format=fmt)
    g, b = make((n, c), device=device, dtype=dtype), make((n, c), device=device, dtype=dtype)
    r = make(layer["shape"], device=device, dtype=dtype).contiguous(memory_format=fmt) if layer["residual"] else None
    return x, g, b, r


def unfused_norm_bytes(layers: list[dict], channels_last: bool = False) -> int:
    """Counted bytes of :func:`unfused_norm` over ``layers`` (fp16, on meta tensors)."""
    total = 0
    for L in layers:
        x, g, b, r = _norm_inputs(L, "meta", channels_last=channels_last)
        total += count_bytes(lambda: unfused_norm(x, g, b, L["act"], r))
    return total


def fused_norm_bytes(layer: dict, elem: int = 2, channels_last: bool = False) -> int:
    """Bytes the fused kernel moves for one layer: x once or twice, y once, residual once, rows."""
    n, c, h, w = layer["shape"]
    t = n * c * h * w * elem
    block_c = min(1 << (c - 1).bit_length(), 32) if channels_last and c > 1 else 1
    reads_x = 1 if h * w <= FUSED_MAX_TILE // block_c else 2
    return reads_x * t + t + (t if layer["residual"] else 0) + 2 * n * c * elem


def composite_scenario(h: int, w: int, fullres_fp32: bool = False) -> dict:
    if fullres_fp32:
        return dict(frame=(h, w), mask=MASK_HW, fg=((h, w), torch.float32), bg=((h, w), torch.float32))
    return dict(frame=(h, w), mask=MASK_HW, fg=((math.ceil(h / 2), math.ceil(w / 2)), torch.float16),
                bg=((math.ceil(h / 4), math.ceil(w / 4)), torch.float16))


def _composite_inputs(sc: dict, device, make=torch.empty):
    frame = torch.randint(0, 256, (*sc["frame"], 3), dtype=torch.uint8, device=device) if make is torch.rand \
        else make((*sc["frame"], 3), dtype=torch.uint8, device=device)
    mask = make(sc["mask"], device=device)
    fg = make((1, 3, *sc["fg"][0]), dtype=sc["fg"][1], device=device)
    bg = make((1, 3, *sc["bg"][0]), dtype=sc["bg"][1], device=device)
    if make is torch.rand:
        fg = fg - 0.5  # a delta
    return frame, mask, fg, bg


def fused_composite_bytes(sc: dict) -> int:
    h, w = sc["frame"]
    total = 2 * h * w * 3 + sc["mask"][0] * sc["mask"][1] * 4
    for key in ("fg", "bg"):
        (th, tw), dt = sc[key]
        total += 3 * th * tw * torch.empty((), dtype=dt).element_size()
    return total


def unfused_lut_delta(frame: torch.Tensor, lut: torch.Tensor, scale: float, out_dtype: torch.dtype) -> torch.Tensor:
    """The torch path ``lut_delta`` replaces: float RGB frame → ``grid_sample`` (``realtime.lut.apply_lut``,
    which this package may not import) → minus the frame → times the weight → ``out_dtype``."""
    h, w = frame.shape[:2]
    x = ref.prepare(frame, h, w, torch.float32)  # [1, 3, H, W]
    grid = (x.clamp(0.0, 1.0) * 2 - 1).flip(1).permute(0, 2, 3, 1).unsqueeze(1)  # [1, 1, H, W, 3] = (b, g, r)
    y = F.grid_sample(lut[None], grid, mode="bilinear", padding_mode="border", align_corners=True)[:, :, 0]
    return ((y - x) * scale).to(out_dtype)


def _lut_inputs(h: int, w: int, device, make=torch.empty):
    if make is torch.empty:
        return (torch.empty((h, w, 3), dtype=torch.uint8, device=device),
                torch.empty((3, LUT_DIM, LUT_DIM, LUT_DIM), device=device))
    g = torch.Generator().manual_seed(0)
    frame = torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=g).to(device)
    axis = torch.linspace(0.0, 1.0, LUT_DIM)
    ident = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"))
    return frame, (ident + 0.1 * torch.randn(ident.shape, generator=g)).to(device)


def fused_lut_delta_bytes(h: int, w: int, elem: int = 2) -> int:
    """The frame read once, the change written once, the LUT read once."""
    return h * w * 3 + 3 * h * w * elem + 3 * LUT_DIM ** 3 * 4


def analytic(h: int = 1080, w: int = 1920) -> dict:
    """Bytes moved per frame, unfused (counted) vs fused, for the norm and compositing workloads."""
    meta = torch.device("meta")
    layers = norm_layers(h, w)
    unfused = unfused_norm_bytes(layers)
    fused = sum(fused_norm_bytes(L) for L in layers)
    out: dict[str, Any] = {"frame": f"{w}x{h}", "norm": {
        "unfused_bytes": unfused, "fused_bytes": fused, "ratio": round(unfused / fused, 3),
        "target_ratio": TARGETS["norm"], "layers": len(layers), "dtype": "float16", "layout": "NCHW",
        "per_layer": [{"shape": list(L["shape"]), "act": L["act"], "residual": L["residual"],
                       "unfused_bytes": unfused_norm_bytes([L]), "fused_bytes": fused_norm_bytes(L)}
                      for L in layers]}}
    # The cuda engine runs channels_last; instance_norm then first copies x to NCHW.
    unfused_cl = unfused_norm_bytes(layers, channels_last=True)
    fused_cl = sum(fused_norm_bytes(L, channels_last=True) for L in layers)
    out["norm_channels_last"] = {"unfused_bytes": unfused_cl, "fused_bytes": fused_cl,
                                 "ratio": round(unfused_cl / fused_cl, 3), "layout": "channels_last"}
    for key, full in (("composite", False), ("composite_fullres_fp32", True)):
        sc = composite_scenario(h, w, full)
        frame, mask, fg, bg = _composite_inputs(sc, meta)
        unf = count_bytes(lambda: ref.composite(frame, mask, fg, bg, "delta", "image", 0.4, 0.1, 1.0))
        fus = fused_composite_bytes(sc)
        out[key] = {"unfused_bytes": unf, "fused_bytes": fus, "ratio": round(unf / fus, 3),
                    "scenario": {k: (list(v) if k in ("frame", "mask") else [list(v[0]), str(v[1])])
                                 for k, v in sc.items()}}
    out["composite"]["target_ratio"] = TARGETS["composite"]
    oh, ow = h // 2, w // 2
    unf = count_bytes(lambda: ref.prepare(torch.empty((h, w, 3), dtype=torch.uint8, device=meta), oh, ow,
                                          torch.float16))
    fus = h * w * 3 + 3 * oh * ow * 2
    out["prepare"] = {"unfused_bytes": unf, "fused_bytes": fus, "ratio": round(unf / fus, 3),
                      "scenario": f"{w}x{h} uint8 -> {ow}x{oh} fp16"}
    frame, lut = _lut_inputs(h, w, meta)
    unf = count_bytes(lambda: unfused_lut_delta(frame, lut, LUT_SCALE, torch.float16))
    fus = fused_lut_delta_bytes(h, w)
    out["lut_delta"] = {"unfused_bytes": unf, "fused_bytes": fus, "ratio": round(unf / fus, 3),
                        "scenario": f"{w}x{h} uint8, {LUT_DIM}^3 LUT -> fp16 change"}
    return out


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------

def _quantiles(ms: list[float]) -> dict:
    s = sorted(ms)

    def q(p):
        return s[min(len(s) - 1, max(0, round(p * (len(s) - 1))))]

    return {"median_ms": round(q(0.5), 4), "p20_ms": round(q(0.2), 4), "p80_ms": round(q(0.8), 4),
            "min_ms": round(s[0], 4), "reps": len(s)}


def time_fn(fn: Callable[[], Any], device: torch.device, warmup: int, reps: int) -> dict:
    """Median and quantiles of ``fn``; on CUDA with events, after flushing L2 before each repetition."""
    for _ in range(warmup):
        fn()
    if device.type != "cuda":
        ms = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ms.append((time.perf_counter() - t0) * 1e3)
        return _quantiles(ms)
    flush = torch.empty(256 * 2**20, dtype=torch.uint8, device=device)  # larger than any L2
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    torch.cuda.synchronize(device)
    for i in range(reps):
        flush.zero_()
        starts[i].record()
        fn()
        ends[i].record()
    torch.cuda.synchronize(device)
    return _quantiles([s.elapsed_time(e) for s, e in zip(starts, ends)])


def _with_bw(t: dict, nbytes: int) -> dict:
    t["bytes"] = nbytes
    t["GB_per_s"] = round(nbytes / (t["median_ms"] * 1e-3) / 1e9, 2) if t["median_ms"] > 0 else None
    return t


def time_size(h: int, w: int, device: torch.device, providers: list[str], warmup: int, reps: int) -> dict:
    """Time every provider's norm layers, prepare, masked blur and composite for one frame size."""
    res: dict[str, Any] = {}
    layers = norm_layers(h, w)
    for key, cl in (("norm", False), ("norm_channels_last", True)):
        fus_b = sum(fused_norm_bytes(L, channels_last=cl) for L in layers)
        torch.manual_seed(0)
        inputs = [_norm_inputs(L, device, make=torch.randn, channels_last=cl) for L in layers]
        norm: dict[str, Any] = {"layers": len(layers)}
        norm["reference"] = _with_bw(time_fn(
            lambda: [unfused_norm(x, g, b, L["act"], r) for L, (x, g, b, r) in zip(layers, inputs)],
            device, warmup, reps), unfused_norm_bytes(layers, cl))
        if "triton" in providers:
            from kernels import triton_norm

            norm["triton"] = _with_bw(time_fn(
                lambda: [triton_norm.norm_rows(x, g, b, L["act"], r, 1e-5)
                         for L, (x, g, b, r) in zip(layers, inputs)], device, warmup, reps), fus_b)
            norm["speedup"] = round(norm["reference"]["median_ms"] / norm["triton"]["median_ms"], 2)
        res[key] = norm
        del inputs

    sc = composite_scenario(h, w)
    frame, mask, fg, bg = _composite_inputs(sc, device, make=torch.rand)
    comp: dict[str, Any] = {}
    unf_c = count_bytes(lambda: ref.composite(*_composite_inputs(sc, "meta"), "delta", "image", 0.4, 0.1, 1.0))
    comp["reference"] = _with_bw(time_fn(lambda: ref.composite(frame, mask, fg, bg, "delta", "image", 0.4, 0.1, 1.0),
                                         device, warmup, reps), unf_c)
    prep: dict[str, Any] = {}
    blur: dict[str, Any] = {}
    oh, ow = h // 2, w // 2
    prep["reference"] = time_fn(lambda: ref.prepare(frame, oh, ow, torch.float16), device, warmup, reps)
    bh, bw = sc["bg"][0]
    small = ref.prepare(frame, bh, bw, torch.float16)
    blur["reference"] = time_fn(lambda: ref.masked_blur(small, mask, 4.0, 0.4, 0.1, torch.float16),
                                device, warmup, reps)
    if "cupy" in providers:
        from kernels import cupy_ops

        comp["cupy"] = _with_bw(time_fn(
            lambda: cupy_ops.composite(frame, mask, fg, bg, "delta", "image", 0.4, 0.1, 1.0),
            device, warmup, reps), fused_composite_bytes(sc))
        comp["speedup"] = round(comp["reference"]["median_ms"] / comp["cupy"]["median_ms"], 2)
        prep["cupy"] = _with_bw(time_fn(lambda: cupy_ops.prepare(frame, oh, ow, torch.float16), device, warmup, reps),
                                h * w * 3 + 3 * oh * ow * 2)
        prep["speedup"] = round(prep["reference"]["median_ms"] / prep["cupy"]["median_ms"], 2)
        blur["cupy"] = time_fn(lambda: cupy_ops.masked_blur(small, mask, 4.0, 0.4, 0.1, torch.float16),
                               device, warmup, reps)
        blur["speedup"] = round(blur["reference"]["median_ms"] / blur["cupy"]["median_ms"], 2)
    res["composite"], res["prepare"], res["masked_blur"] = comp, prep, blur
    frame, lut = _lut_inputs(h, w, device, make=torch.rand)
    look: dict[str, Any] = {"lut_dim": LUT_DIM}
    look["reference"] = _with_bw(time_fn(lambda: unfused_lut_delta(frame, lut, LUT_SCALE, torch.float16),
                                         device, warmup, reps),
                                 count_bytes(lambda: unfused_lut_delta(*_lut_inputs(h, w, "meta"), LUT_SCALE,
                                                                       torch.float16)))
    if "cupy" in providers:
        look["cupy"] = _with_bw(time_fn(lambda: cupy_ops.lut_delta(frame, lut, LUT_SCALE, torch.float16),
                                        device, warmup, reps), fused_lut_delta_bytes(h, w))
        look["speedup"] = round(look["reference"]["median_ms"] / look["cupy"]["median_ms"], 2)
    res["lut_delta"] = look
    if "triton" in providers and "cupy" in providers:
        # GPU time of this package's kernels in one frame, in the cuda engine's channels_last layout
        # (the generator's convolutions are not included).
        res["kernels_frame_ms"] = round(res["norm_channels_last"]["triton"]["median_ms"] + comp["cupy"]["median_ms"]
                                        + prep["cupy"]["median_ms"] + blur["cupy"]["median_ms"], 4)
    return res


# ---------------------------------------------------------------------------------------------
# Provenance and CLI
# ---------------------------------------------------------------------------------------------

def parse_size(text: str) -> tuple[str, tuple[int, int]]:
    key = text.strip().lower()
    if key in SIZES:
        return key, SIZES[key]
    try:
        w, h = (int(v) for v in key.split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 720p, 1080p, 4k or WxH, got {text!r}") from None
    if w < 4 or h < 4:
        raise argparse.ArgumentTypeError(f"size must be at least 4x4, got {text!r}")
    return f"{w}x{h}", (h, w)


def run(json_path: Path | None, device_arg: str, sizes: list[tuple[str, tuple[int, int]]], warmup: int,
        reps: int) -> dict:
    from kernels import dispatch

    ok, reason = dispatch.gpu_status()
    if device_arg == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(device_arg)
    machine_extra = {"device": str(device)}
    if device.type == "cuda":
        machine_extra["gpu"] = torch.cuda.get_device_name(device)
    result: dict[str, Any] = {
        "benchmark": "kernels", **provenance(machine_extra), "dispatch": reason,
        "analytic": analytic(),
    }
    timed = device.type == "cuda" or device_arg == "cpu"
    if not timed:
        result["timings"] = None
        result["timings_skipped"] = f"no CUDA device ({reason}); pass --device cpu to time the references"
    else:
        providers = ["reference"]
        if device.type == "cuda":
            p = dispatch.providers()
            providers += [v for v in (p.norm, p.composite) if v != "reference"]
        result["providers"] = providers
        result["timings"] = {name: time_size(h, w, device, providers, warmup, reps) for name, (h, w) in sizes}
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def summary_lines(result: dict) -> list[str]:
    a = result["analytic"]
    lines = [f"dispatch: {result['dispatch']}",
             f"analytic bytes per {a['frame']} frame (unfused / fused = ratio, target):"]
    for key in ("norm", "norm_channels_last", "composite", "composite_fullres_fp32", "prepare", "lut_delta"):
        v = a[key]
        tgt = f" (target >= {v['target_ratio']})" if "target_ratio" in v else ""
        lines.append(f"  {key:24s} {v['unfused_bytes'] / 1e6:9.1f} MB / {v['fused_bytes'] / 1e6:7.1f} MB "
                     f"= {v['ratio']:.2f}x{tgt}")
    for size, t in (result.get("timings") or {}).items():
        for op in ("norm", "norm_channels_last", "composite", "prepare", "masked_blur", "lut_delta"):
            row = ", ".join(f"{p} {t[op][p]['median_ms']:.3f} ms" for p in ("reference", "triton", "cupy")
                            if p in t[op])
            sp = f" (speedup {t[op]['speedup']}x)" if "speedup" in t[op] else ""
            lines.append(f"  {size:>9s} {op:18s} {row}{sp}")
    for size, t in (result.get("timings") or {}).items():
        if "kernels_frame_ms" in t:
            lines.append(f"  {size:>9s} kernels per frame (norm layers + prepare + blur + composite): "
                         f"{t['kernels_frame_ms']:.3f} ms")
    if result.get("timings_skipped"):
        lines.append(f"timings skipped: {result['timings_skipped']}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kernels.benchmarks", description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                    help="auto: time on CUDA if present, else analytic only; cpu: time the references on the CPU")
    ap.add_argument("--sizes", default="720p,1080p,4k", help="comma-separated 720p, 1080p, 4k or WxH")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--reps", type=int, default=50)
    args = ap.parse_args(argv)
    try:
        sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    except argparse.ArgumentTypeError as err:
        ap.error(f"--sizes: {err}")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device available")
    if args.reps < 1 or args.warmup < 0:
        ap.error("--reps must be >= 1 and --warmup >= 0")
    if args.json is not None and not args.json.parent.exists():
        ap.error(f"--json: folder {args.json.parent} does not exist")
    result = run(args.json, args.device, sizes, args.warmup, args.reps)
    print("\n".join(summary_lines(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
