"""One-shot GPU verification: every GPU number at once, a verdict per line, one JSON file.

    python -m ui.gpu_check --json gpu-check.json     # make gpu-check; at most 8 minutes
    python -m ui.gpu_check --steps fp16,recording    # rerun some of the steps

Five steps, each in its own process with its own time limit, so a hang or a crash in one
never stops the others:

* ``tests``: the tests marked ``gpu`` (``tests/kernels/test_gpu.py``), through pytest. On a GPU
  machine a skipped test fails the check.
* ``kernels``: the kernel benchmark at 720p, 1080p and 4K, Triton and CuPy against the torch
  references.
* ``pipeline``: ``stylecam bench --backend cuda`` at 1920×1080 with segmentation, including the
  GPU milliseconds per stage (CUDA events).
* ``fp16``: every shipped style pack's student in fp16 as the live CUDA path runs it (Triton norm,
  CuPy prepare, channels_last) against the same student in fp32 with the reference ops, on two
  bundled photos no style was trained on, at 1920×1080.
* ``recording``: 1080p frames through the :class:`~realtime.sinks.Recorder` with ``h264_nvenc``,
  decoded back, against ``libx264`` on the same frames.

Each line says PASS, FAIL or SKIP, the measured value and the budget it was checked against.
The report is rewritten after every step, so a stopped run keeps what it measured::

    {"check": "stylecam gpu-check", "created_utc", "gpu", "commit", "machine", "versions", "budgets",
     "verdict": "PASS" | "FAIL", "counts": {"PASS": n, "FAIL": n, "SKIP": n},
     "lines": [{"check", "verdict", "value", "budget", "reason"}, ...],
     "steps": {name: {"command", "timeout_s", "seconds", "rc", "timed_out", "output_tail",
                      "result": the step's own JSON (the benchmarks' output, junit counts, ...)}}}

Without CUDA the command prints one line and exits 0; with CUDA it exits 1 when a line fails.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEMO_CLIP = REPO / "assets" / "demo" / "demo.mp4"
KERNEL_BENCH = "kernels.benchmarks"  # run with ``python -m``
CLI = "ui.cli"
HD = (1920, 1080)  # (w, h)
KERNEL_SIZES = ("720p", "1080p", "4k")
#: The two bundled photos the style recipes hold out (``training.data.SKIMAGE_HELD_OUT``).
HELD_OUT_PHOTOS = ("coffee", "chelsea")

# Budgets. ARCHITECTURE.md sets the first three; the others say what "works on a GPU" means here.
GPU_FRAME_MS = 3.0  # GPU time per 1920×1080 frame
CAMERA_FPS = 30.0  # "the camera should be the bottleneck": keep up with a 30 fps camera
LATENCY_P95_MS = 50.0  # capture → finished frame, p95 (the live budget)
MIN_SPEEDUP = 1.0  # a fused kernel is no slower than the torch ops it replaces
FP16_PSNR_DB = 40.0  # fp16 looks like fp32: PSNR of the stylized picture ...
FP16_MAX_LEVELS = 8.0  # ... and no pixel visibly off (rounding moves a few pixels by a level or two)
RECORD_PSNR_DB = 30.0  # the recording decodes to the frames that went in (colours and planes in place)

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
TOTAL_BUDGET_S = 480.0  # the whole check; the steps' own limits add up to a little less


def line(check: str, verdict: str, value: Any = None, budget: str | None = None, reason: str = "") -> dict:
    """One verdict: what was checked, PASS/FAIL/SKIP, the measured value, the budget, and why."""
    return {"check": check, "verdict": verdict, "value": value, "budget": budget, "reason": reason}


def _fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


# ---------------------------------------------------------------------------------------------
# Steps: the child command, how to read its result, and the verdicts on that result
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """A part of the check, run as ``argv(folder)`` in a child process within ``timeout_s``."""

    name: str
    what: str
    timeout_s: float
    argv: Callable[[Path], list[str]]  # the child command, given the step's own folder
    read: Callable[[Path], dict]  # its result from that folder; raises when there is none
    judge: Callable[[dict], list[dict]]  # the verdict lines for that result


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path.name} was not written")
    return json.loads(path.read_text())


# ---- tests ----------------------------------------------------------------------------------
GPU_TESTS = ("-m", "gpu", "tests")  # what pytest runs: every test marked gpu


def tests_argv(folder: Path, selection: tuple[str, ...] = GPU_TESTS) -> list[str]:
    argv = [sys.executable, "-m", "pytest", "-q", *selection, "-p", "no:cacheprovider",
            f"--junitxml={folder / 'junit.xml'}", "-o", "junit_family=xunit2"]
    if importlib.util.find_spec("pytest_timeout") is not None:
        argv.append("--timeout=60")  # one hung test fails alone instead of taking the step's whole time
    return argv


def read_junit(folder: Path) -> dict:
    """Counts and the first problems from pytest's JUnit XML."""
    path = folder / "junit.xml"
    if not path.is_file():
        raise FileNotFoundError("pytest wrote no junit.xml")
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    counts = {"tests": 0, "failed": 0, "errors": 0, "skipped": 0}
    problems = []
    for s in suites:
        counts["tests"] += int(s.get("tests", 0))
        counts["failed"] += int(s.get("failures", 0))
        counts["errors"] += int(s.get("errors", 0))
        counts["skipped"] += int(s.get("skipped", 0))
        for case in s.iter("testcase"):
            for outcome, tag in (("failed", "failure"), ("error", "error"), ("skipped", "skipped")):
                el = case.find(tag)
                if el is not None:
                    msg = (el.get("message") or el.text or "").strip().splitlines()
                    problems.append({"test": f"{case.get('classname', '')}::{case.get('name', '')}",
                                     "outcome": outcome, "message": (msg[0] if msg else "")[:200]})
    counts["passed"] = counts["tests"] - counts["failed"] - counts["errors"] - counts["skipped"]
    return {**counts, "problems": problems}


def judge_tests(d: dict) -> list[dict]:
    value = f"{d['passed']} passed, {d['failed']} failed, {d['errors']} errors, {d['skipped']} skipped"
    budget = "every gpu-marked test runs and passes (a skip fails on a GPU machine)"
    if d["tests"] == 0:
        return [line("gpu_tests", FAIL, value, budget, "no test was collected with the gpu marker")]
    if d["failed"] or d["errors"] or d["skipped"]:
        groups: dict[tuple[str, str], list[str]] = {}  # (outcome, message) -> tests
        for p in d["problems"]:
            groups.setdefault((p["outcome"], p["message"]), []).append(p["test"])
        why = "; ".join(f"{outcome} {tests[0]}{f' and {len(tests) - 1} more' if len(tests) > 1 else ''}: {msg}"
                        for (outcome, msg), tests in list(groups.items())[:3])
        return [line("gpu_tests", FAIL, value, budget, why)]
    return [line("gpu_tests", PASS, value, budget)]


# ---- kernels --------------------------------------------------------------------------------
def kernels_argv(folder: Path) -> list[str]:
    return [sys.executable, "-m", KERNEL_BENCH, "--json", str(folder / "kernels.json"), "--device", "cuda",
            "--sizes", ",".join(KERNEL_SIZES)]


def judge_kernels(d: dict) -> list[dict]:
    providers = d.get("providers") or []
    out = [line("kernel_providers", PASS if {"triton", "cupy"} <= set(providers) else FAIL,
                ", ".join(providers) or None, "Triton norm and CuPy compositing serve CUDA tensors",
                d.get("dispatch") or "")]
    timings = d.get("timings")
    if not timings:
        out.append(line("kernel_timings", FAIL, None, "timed on CUDA at " + ", ".join(KERNEL_SIZES),
                        d.get("timings_skipped") or "the benchmark returned no timings"))
        return out
    budget = f"every fused op's speedup over the torch reference ≥ {MIN_SPEEDUP:g}"
    for size in KERNEL_SIZES:
        t = timings.get(size)
        speed = {op: v["speedup"] for op, v in (t or {}).items() if isinstance(v, dict) and "speedup" in v}
        if not speed:
            out.append(line(f"kernels_{size}_speedup", FAIL, None, budget,
                            "no fused provider was timed" if t else f"no timings at {size}"))
            continue
        worst = min(speed, key=speed.get)
        value = ", ".join(f"{op} {s:.2f}x" for op, s in speed.items())
        ok = speed[worst] >= MIN_SPEEDUP
        out.append(line(f"kernels_{size}_speedup", PASS if ok else FAIL, value, budget,
                        "" if ok else f"{worst} is slower than the reference ({speed[worst]:.2f}x)"))
    frame_ms = (timings.get("1080p") or {}).get("kernels_frame_ms")
    budget = (f"≤ {GPU_FRAME_MS:g} ms, the whole GPU budget of a 1080p frame (ARCHITECTURE.md); "
              "convolutions not included")
    if frame_ms is None:
        out.append(line("kernels_1080p_frame_ms", FAIL, None, budget, "no kernels_frame_ms at 1080p"))
    else:
        out.append(line("kernels_1080p_frame_ms", PASS if frame_ms <= GPU_FRAME_MS else FAIL,
                        f"{frame_ms:.3f} ms", budget, "norm layers + prepare + masked blur + composite"))
    return out


# ---- pipeline -------------------------------------------------------------------------------
def pipeline_argv(folder: Path) -> list[str]:
    w, h = HD
    return [sys.executable, "-m", CLI, "bench", "--backend", "cuda", "--source", str(DEMO_CLIP),
            "--size", f"{w}x{h}", "--frames", "300", "--preset", "blur", "--no-engine-compare",
            "--json", str(folder / "pipeline.json")]


def judge_pipeline(d: dict) -> list[dict]:
    out = []
    on_cuda = d.get("backend") == "cuda"
    out.append(line("pipeline_backend", PASS if on_cuda else FAIL, d.get("backend"), "the cuda backend runs",
                    d.get("backend_reason") or ""))
    seg_ms = (d.get("stages_ms") or {}).get("segment") or 0.0
    seg_ok = bool(d.get("segmentation")) and seg_ms > 0
    out.append(line("pipeline_segmentation", PASS if seg_ok else FAIL, f"{seg_ms:.2f} ms (CPU)",
                    "segmentation runs (person styled, background blurred)",
                    "" if seg_ok else "the benchmark ran without segmentation"))
    g = d.get("gpu_stages_ms")
    budget = f"≤ {GPU_FRAME_MS:g} ms GPU per 1920×1080 frame (ARCHITECTURE.md)"
    if not g:
        out.append(line("pipeline_gpu_ms_per_frame", FAIL, None, budget,
                        "no GPU stage times: the device path did not run on CUDA"))
    else:
        stages = ", ".join(f"{k} {v:.2f}" for k, v in g.items() if k != "total")
        out.append(line("pipeline_gpu_ms_per_frame", PASS if g["total"] <= GPU_FRAME_MS else FAIL,
                        f"{g['total']:.2f} ms ({stages})", budget,
                        "medians of CUDA-event spans per stage (they include GPU idle while the host launches)"))
    fps = d.get("fps_median")
    out.append(line("pipeline_fps_1080p", PASS if fps is not None and fps >= CAMERA_FPS else FAIL,
                    f"{_fmt(fps, 1)} fps", f"≥ {CAMERA_FPS:g} fps: the camera is the bottleneck (ARCHITECTURE.md)",
                    f"wall-clock stage medians {d.get('stages_ms')}"))
    p95 = d.get("latency_ms_p95")
    out.append(line("pipeline_latency_p95_1080p", PASS if p95 is not None and p95 <= LATENCY_P95_MS else FAIL,
                    f"{_fmt(p95, 1)} ms", f"≤ {LATENCY_P95_MS:g} ms capture → finished frame (ARCHITECTURE.md)",
                    f"source paced at {d.get('paced_source_fps')} fps"))
    return out


# ---- fp16 fidelity --------------------------------------------------------------------------
def held_out_pictures(size: tuple[int, int]) -> dict[str, np.ndarray]:
    """The held-out bundled photos as ``(h, w, 3)`` uint8 BGR at ``size=(w, h)``, scaled to cover."""
    import cv2
    import skimage.data

    w, h = size
    out = {}
    for name in HELD_OUT_PHOTOS:
        rgb = getattr(skimage.data, name)()  # (H, W, 3) uint8 RGB
        scale = max(w / rgb.shape[1], h / rgb.shape[0])
        sw, sh = max(w, math.ceil(rgb.shape[1] * scale)), max(h, math.ceil(rgb.shape[0] * scale))
        big = cv2.resize(rgb[:, :, ::-1], (sw, sh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        x0, y0 = (sw - w) // 2, (sh - h) // 2
        out[name] = np.ascontiguousarray(big[y0 : y0 + h, x0 : x0 + w])
    return out


def fp16_fidelity(device: str = "cuda", size: tuple[int, int] = HD, styles_dirs: list[str] | None = None,
                  include_shipped: bool = True, pictures: dict[str, np.ndarray] | None = None,
                  progress: Callable[[str], None] = lambda msg: None) -> dict:
    """Every style of every student pack: fp16 as the live CUDA path runs it against fp32 with the reference ops.

    fp16: ``net.half()`` in channels_last with :func:`kernels.dispatch.student_norm_impl` (the Triton
    norm on CUDA) and :func:`kernels.dispatch.prepare` (CuPy on CUDA), as ``CudaEngine`` and
    ``Stylizer.delta_torch`` run it. fp32: the same weights with the torch reference norm and prepare,
    TF32 off.
    The student runs at the frame size, as it does on the cuda backend.

    Returns:
        ``{"packs": [{"pack", "styles", "worst_psnr_db", "worst_max_levels", "results": [...]}], ...}``;
        PSNR over [0, 1] pictures (None when identical), max error in uint8 levels.
    """
    import torch

    from kernels import dispatch
    from kernels import reference as ref
    from realtime.student import set_norm_impl
    from realtime.styles import StyleRegistry

    dev = torch.device(device)
    w, h = size[0] // 4 * 4, size[1] // 4 * 4
    pictures = pictures if pictures is not None else held_out_pictures((w, h))
    registry = StyleRegistry(styles_dirs or [], include_user=False, include_shipped=include_shipped)
    impl = dispatch.student_norm_impl()
    result: dict[str, Any] = {
        "device": str(dev), "size": [w, h], "pictures": list(pictures),
        "norm": "triton" if impl is not None and dev.type == "cuda" else "reference",
        "prepare": dispatch.providers().composite if dev.type == "cuda" else "reference", "packs": [],
        "not_compared": []}
    # A true fp32 reference: cuDNN would otherwise run fp32 convolutions in TF32 (fp16's mantissa).
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for name, pack in registry.packs.items():
            if not pack.has_student or pack.kind != "cin":
                why = "guided styles only, no student" if not pack.has_student else \
                    "a LUT student: its device path (realtime.lut_live) is not compared here"
                result["not_compared"].append({"pack": name, "why": why})
                continue
            progress(f"fp16 against fp32: {name}")
            n_styles = pack.architecture["num_styles"]
            net32 = pack.build().eval().to(dev)
            net16 = pack.build().eval().half().to(dev).to(memory_format=torch.channels_last)
            rows = []
            with torch.inference_mode():
                for pic, frame in pictures.items():
                    ft = torch.from_numpy(frame).to(dev)
                    x32 = ref.prepare(ft, h, w, torch.float32)
                    x16 = dispatch.prepare(ft, h, w, torch.float16).contiguous(memory_format=torch.channels_last)
                    for i, style in enumerate(pack.styles):
                        rw = torch.zeros(1, n_styles, device=dev)
                        rw[0, i] = 1.0
                        set_norm_impl(None)
                        y32 = net32(x32, rw)  # [1, 3, h, w] in [0, 1]
                        set_norm_impl(impl)
                        y16 = net16(x16, rw.half()).float()
                        finite = bool(torch.isfinite(y16).all())
                        err = (y16 - y32).abs()
                        mse = float((err ** 2).mean()) if finite else math.nan
                        rows.append({"style": style.id, "picture": pic, "finite": finite,
                                     "psnr_db": round(10 * math.log10(1.0 / mse), 2) if finite and mse > 0 else None,
                                     "max_levels": round(float(err.max()) * 255, 3) if finite else None})
            ok = [r for r in rows if r["finite"]]
            psnrs = [r["psnr_db"] for r in ok if r["psnr_db"] is not None]
            result["packs"].append({"pack": name, "arch": pack.architecture.get("arch"), "styles": n_styles,
                                    "nonfinite": len(rows) - len(ok),
                                    "worst_psnr_db": min(psnrs) if psnrs else None,
                                    "worst_max_levels": max((r["max_levels"] for r in ok), default=None),
                                    "results": rows})
    finally:
        set_norm_impl(None)
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    return result


def fp16_argv(folder: Path) -> list[str]:
    return [sys.executable, "-m", "ui.gpu_check", "--step", "fp16", "--out", str(folder / "fp16.json")]


def _say(msg: str) -> None:
    print(msg, flush=True)  # a child's progress, shown in the report's output tail when it stops early


def judge_fp16(d: dict) -> list[dict]:
    budget = f"PSNR ≥ {FP16_PSNR_DB:g} dB and max error ≤ {FP16_MAX_LEVELS:g}/255 against fp32"
    if not d.get("packs"):
        return [line("fp16_vs_fp32", FAIL, None, budget, "no style pack with a student was found")]
    out = []
    how = f"{d['size'][0]}x{d['size'][1]}, norm {d['norm']}, prepare {d['prepare']}, " \
          f"pictures {', '.join(d['pictures'])} (never trained on)"
    for p in d["packs"]:
        check = f"fp16_vs_fp32_{p['pack']}"
        if p["nonfinite"]:
            out.append(line(check, FAIL, f"{p['nonfinite']} of {len(p['results'])} outputs not finite", budget,
                            "fp16 overflowed (inf/NaN in the stylized picture); " + how))
            continue
        psnr, worst = p["worst_psnr_db"], p["worst_max_levels"]
        ok = (psnr is None or psnr >= FP16_PSNR_DB) and worst <= FP16_MAX_LEVELS
        value = f"worst PSNR {'identical' if psnr is None else f'{psnr:.1f} dB'}, " \
                f"max error {worst:.2f}/255 over {p['styles']} styles"
        out.append(line(check, PASS if ok else FAIL, value, budget, how))
    return out


# ---- recording ------------------------------------------------------------------------------
class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def nvenc_unavailable(size: tuple[int, int]) -> str | None:
    """Why ``h264_nvenc`` cannot be used here (this PyAV build, or the GPU/driver), or None when it opens."""
    import av

    from realtime import sinks

    if "h264_nvenc" not in av.codecs_available:
        return "this PyAV build has no h264_nvenc"
    rec, logger = _Records(), logging.getLogger(sinks.__name__)
    level = logger.level
    logger.addHandler(rec)
    logger.setLevel(logging.DEBUG)
    try:
        ok = sinks.nvenc_works(size[0] & ~1, size[1] & ~1)
    finally:
        logger.removeHandler(rec)
        logger.setLevel(level)
    if ok:
        return None
    why = next((m for m in rec.messages if "nvenc" in m), "no reason given")
    return f"h264_nvenc does not open on this GPU/driver ({why}); recordings fall back to libx264"


def _source_frames(source: Path, size: tuple[int, int], n: int) -> list[np.ndarray]:
    from realtime.sources import open_source

    src = open_source(str(source), size=size, mode="all", loop=True, paced=False, max_frames=n)
    try:
        frames = [f.image for f in src.frames()]
    finally:
        src.close()
    if not frames:
        raise RuntimeError(f"{source}: no frames could be read")
    return frames


def record_once(path: Path, frames: list[np.ndarray], n: int, codec: str, fps: float = 30.0) -> dict:
    """Record ``n`` frames (cycling ``frames``) with ``codec``, decode the file back, and measure both."""
    import av

    from realtime.sinks import Recorder

    h, w = frames[0].shape[:2]
    t0 = time.perf_counter()
    with Recorder(path, w, h, fps, codec=codec) as rec:
        for i in range(n):
            rec.write(frames[i % len(frames)], t_capture=i / fps)
    seconds = time.perf_counter() - t0
    decoded, psnrs = 0, []
    with av.open(str(path)) as container:
        for i, f in enumerate(container.decode(video=0)):
            decoded += 1
            if i % 10 == 0:
                src = frames[i % len(frames)][: h & ~1, : w & ~1].astype(np.float32)
                mse = float(np.mean((f.to_ndarray(format="bgr24").astype(np.float32) - src) ** 2))
                psnrs.append(10 * math.log10(255.0 ** 2 / mse) if mse > 0 else 99.0)
    return {"codec": rec.codec, "nvenc_used": rec.codec == "h264_nvenc", "frames": n,
            "frames_written": rec.frames_written, "decoded_frames": decoded,
            "encode_fps": round(n / seconds, 1), "seconds": round(seconds, 3), "bytes": path.stat().st_size,
            "psnr_db": round(float(np.median(psnrs)), 2) if psnrs else None, "size": [w & ~1, h & ~1]}


def recording_check(folder: Path, size: tuple[int, int] = HD, n: int = 300, source: Path = DEMO_CLIP,
                    codecs: tuple[str, ...] = ("h264_nvenc", "libx264"),
                    progress: Callable[[str], None] = lambda msg: None) -> dict:
    """``n`` frames of ``source`` at ``size`` through the Recorder with each codec, each decoded back."""
    progress(f"reading {source.name} at {size[0]}x{size[1]}")
    frames = _source_frames(source, size, min(n, 60))
    result: dict[str, Any] = {"source": str(source), "size": list(size), "frames": n}
    for codec in codecs:
        why = nvenc_unavailable(size) if codec == "h264_nvenc" else None
        if why is not None:
            result[codec] = {"unavailable": why}
            continue
        progress(f"recording {n} frames with {codec}, then decoding them")
        try:
            result[codec] = record_once(folder / f"{codec}.mkv", frames, n, codec)
        except Exception as exc:  # reported as this codec's failure; the other codec still runs
            result[codec] = {"error": f"{type(exc).__name__}: {exc}"}
    return result


def recording_argv(folder: Path) -> list[str]:
    return [sys.executable, "-m", "ui.gpu_check", "--step", "recording", "--out", str(folder / "recording.json")]


def judge_recording(d: dict) -> list[dict]:
    out = []
    budget = (f"≥ {CAMERA_FPS:g} fps at {d['size'][0]}x{d['size'][1]}, every frame decodes, "
              f"PSNR ≥ {RECORD_PSNR_DB:g} dB")
    x264 = d.get("libx264") or {}
    for codec in ("h264_nvenc", "libx264"):
        r = d.get(codec)
        check = f"recording_{codec}"
        if r is None:
            continue
        if "unavailable" in r:
            out.append(line(check, SKIP, "NVENC not used", budget, r["unavailable"]))
            continue
        if "error" in r:
            out.append(line(check, FAIL, None, budget, r["error"]))
            continue
        problems = []
        if r["decoded_frames"] != r["frames"]:
            problems.append(f"{r['decoded_frames']} of {r['frames']} frames decode")
        if r["encode_fps"] < CAMERA_FPS:
            problems.append(f"{r['encode_fps']} fps is below {CAMERA_FPS:g}")
        if r["psnr_db"] is None or r["psnr_db"] < RECORD_PSNR_DB:
            problems.append(f"decoded PSNR {r['psnr_db']} dB")
        if codec == "h264_nvenc" and not r["nvenc_used"]:
            problems.append(f"the recorder used {r['codec']}")
        value = f"{r['encode_fps']:.1f} fps, {r['decoded_frames']}/{r['frames']} frames decode, " \
                f"PSNR {_fmt(r['psnr_db'], 1)} dB"
        if codec != "libx264" and x264.get("encode_fps"):
            value += f", {r['encode_fps'] / x264['encode_fps']:.2f}x libx264"
        out.append(line(check, FAIL if problems else PASS, value, budget, "; ".join(problems)))
    return out


STEPS: list[Step] = [
    # The first step compiles the Triton autotuning configurations (cached on disk for the steps after it).
    Step("tests", "gpu-marked tests through pytest", 170, tests_argv, read_junit, judge_tests),
    Step("kernels", f"python -m {KERNEL_BENCH} at {', '.join(KERNEL_SIZES)}", 90, kernels_argv,
         lambda f: _read_json(f / "kernels.json"), judge_kernels),
    Step("pipeline", "stylecam bench --backend cuda at 1920x1080 with segmentation", 110, pipeline_argv,
         lambda f: _read_json(f / "pipeline.json"), judge_pipeline),
    Step("fp16", "fp16 students against fp32 on held-out photos", 50, fp16_argv,
         lambda f: _read_json(f / "fp16.json"), judge_fp16),
    Step("recording", "1080p recording with h264_nvenc and libx264, decoded back", 50, recording_argv,
         lambda f: _read_json(f / "recording.json"), judge_recording),
]

#: This module's own steps, run in a child process by ``--step NAME --out FILE``.
CHILD_STEPS: dict[str, Callable[[Path], dict]] = {
    "fp16": lambda folder: fp16_fidelity("cuda", progress=_say),
    "recording": lambda folder: recording_check(folder, progress=_say),
}


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------

def cuda_status() -> tuple[bool, str]:
    """``(True, GPU name)`` or ``(False, why there is no CUDA here)``.

    Raises:
        RuntimeError: a CUDA device is visible but does not start (a broken driver is a failure, not "no GPU").
    """
    import torch

    if torch.version.cuda is None:
        return False, f"torch {torch.__version__} is built without CUDA"
    if not torch.cuda.is_available():
        return False, "no CUDA device is visible"
    try:
        torch.zeros(1, device="cuda").add_(1)
        return True, torch.cuda.get_device_name(0)
    except Exception as exc:
        raise RuntimeError(f"a CUDA device is visible but does not start ({type(exc).__name__}: {exc})") from exc


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-chars:]


def run_step(step: Step, work: Path, timeout_s: float | None = None) -> tuple[dict, list[dict]]:
    """Run one step in its own process group; kill it at its limit. Never raises for the step's failures."""
    folder = work / step.name
    folder.mkdir(parents=True, exist_ok=True)
    limit = step.timeout_s if timeout_s is None else timeout_s
    argv = step.argv(folder)
    record: dict[str, Any] = {"command": argv, "timeout_s": round(limit, 1), "rc": None, "timed_out": False}
    log_path = folder / "output.log"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONUNBUFFERED": "1"}
    t0 = time.monotonic()
    try:
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(argv, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, start_new_session=True)
            try:
                record["rc"] = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                record["timed_out"] = True
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # the child and anything it started
                except ProcessLookupError:
                    pass
                proc.wait()
    except OSError as exc:
        record["start_error"] = f"{type(exc).__name__}: {exc}"
    record["seconds"] = round(time.monotonic() - t0, 1)
    record["output_tail"] = _tail(log_path)
    last = next((s for s in reversed(record["output_tail"].strip().splitlines()) if s.strip()), "")
    if "start_error" in record:
        return record, [line(step.name, FAIL, None, f"runs within {limit:.0f} s", record["start_error"])]
    if record["timed_out"]:
        return record, [line(step.name, FAIL, None, f"runs within {limit:.0f} s",
                             f"stopped at its limit of {limit:.0f} s; last output: {last[:200]}")]
    try:
        record["result"] = step.read(folder)
    except Exception as exc:
        return record, [line(step.name, FAIL, None, f"runs within {limit:.0f} s",
                             f"no result (exit code {record['rc']}: {exc}); last output: {last[:200]}")]
    try:
        lines = step.judge(record["result"])
    except Exception as exc:  # a result without the expected fields
        lines = [line(step.name, FAIL, None, None, f"unexpected result ({type(exc).__name__}: {exc})")]
    return record, lines


def _provenance() -> dict:
    from kernels.provenance import provenance

    p = provenance()
    p.pop("created_utc", None)  # the report has its own
    return p


def _write_json(path: Path, data: dict) -> None:
    """Write atomically: a reader never sees half a file, and a stopped run keeps the last one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def format_line(ln: dict) -> str:
    text = f"{ln['verdict']:4s}  {ln['check']:30s} {ln['value'] if ln['value'] is not None else '-'}"
    if ln["budget"]:
        text += f"  [budget: {ln['budget']}]"
    if ln["reason"]:
        text += f"  ({ln['reason']})"
    return text


def run_check(steps: list[Step], json_path: Path | None, gpu: str, budget_s: float = TOTAL_BUDGET_S,
              echo: Callable[[str], None] = print) -> dict:
    """Run ``steps`` one after another (each in its own process) and write the report after each."""
    try:
        prov = _provenance()
    except Exception as exc:  # provenance is a nice-to-have; the checks still run
        prov = {"provenance_error": f"{type(exc).__name__}: {exc}"}
    report: dict[str, Any] = {
        "check": "stylecam gpu-check", "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "gpu": gpu, **prov, "budgets": {"gpu_frame_ms": GPU_FRAME_MS, "camera_fps": CAMERA_FPS,
                                "latency_p95_ms": LATENCY_P95_MS, "min_kernel_speedup": MIN_SPEEDUP,
                                "fp16_psnr_db": FP16_PSNR_DB, "fp16_max_levels": FP16_MAX_LEVELS,
                                "record_psnr_db": RECORD_PSNR_DB},
        "verdict": None, "counts": {}, "lines": [], "steps": {}}
    deadline = time.monotonic() + budget_s
    with tempfile.TemporaryDirectory(prefix="stylecam-gpu-check-") as work:
        for i, step in enumerate(steps, 1):
            left = deadline - time.monotonic()
            echo(f"[{i}/{len(steps)}] {step.name}: {step.what} (limit {min(step.timeout_s, left):.0f} s)")
            if left < 1:
                record = {"command": step.argv(Path(work) / step.name), "skipped": "no time left"}
                lines = [line(step.name, FAIL, None, f"the whole check within {budget_s:.0f} s",
                              "not run: the check's time was used up by the steps before it")]
            else:
                record, lines = run_step(step, Path(work), min(step.timeout_s, left))
            report["steps"][step.name] = record
            report["lines"].extend(lines)
            for ln in lines:
                echo("  " + format_line(ln))
            _summarize(report)
            if json_path is not None:
                _write_json(json_path, report)
    return report


def _summarize(report: dict) -> None:
    counts = {v: sum(ln["verdict"] == v for ln in report["lines"]) for v in (PASS, FAIL, SKIP)}
    report["counts"] = counts
    report["verdict"] = FAIL if counts[FAIL] else PASS


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ui.gpu_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, default=Path("gpu-check.json"), help="write the report here")
    ap.add_argument("--steps", default=",".join(s.name for s in STEPS),
                    help=f"comma-separated steps to run (default all: {', '.join(s.name for s in STEPS)})")
    ap.add_argument("--step", choices=sorted(CHILD_STEPS), help=argparse.SUPPRESS)  # a child runs one step
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.step:
        if args.out is None:
            ap.error("--step needs --out FILE")
        _write_json(args.out, CHILD_STEPS[args.step](args.out.parent))
        return 0
    names = [s.strip() for s in args.steps.split(",") if s.strip()]
    by_name = {s.name: s for s in STEPS}
    unknown = [n for n in names if n not in by_name]
    if unknown or not names:
        ap.error(f"--steps {args.steps}: expected names from {', '.join(by_name)}")
    if not args.json.parent.is_dir():
        ap.error(f"--json {args.json}: folder {args.json.parent} does not exist")
    try:
        ok, gpu = cuda_status()
    except RuntimeError as exc:
        print(f"gpu-check: FAIL: {exc}")
        return 1
    if not ok:
        print(f"gpu-check: no CUDA on this machine ({gpu}); nothing to check, no report written")
        return 0
    report = run_check([by_name[n] for n in names], args.json, gpu)
    c = report["counts"]
    print(f"gpu-check: {report['verdict']} ({c[PASS]} pass, {c[FAIL]} fail, {c[SKIP]} skip); wrote {args.json}")
    return 1 if report["verdict"] == FAIL else 0


if __name__ == "__main__":
    sys.exit(main())
