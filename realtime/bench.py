"""End-to-end benchmark of the live pipeline; prints JSON (``stylecam bench``).

Two measurements on the same frames:

* **throughput** — the source unpaced, frames processed back to back: ``fps_median`` is
  ``1000 / median(ms between finished frames)``;
* **latency** — the source paced at its own frame rate, as a camera delivers it, into the
  latest-frame slot: capture → finished frame, ``latency_ms_p50`` / ``latency_ms_p95``.

Plus the time to the first frame from a cold start, per-stage medians, the CPU engine
comparison (eager channels_last, ``torch.compile``, ONNX Runtime) and optional teacher
baselines timed on the same frames.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from .pipeline import FrameStats, Pipeline, PipelineConfig
from .sources import open_source
from .stylizer import compare_cpu_engines, cpu_model, cpu_threads, engine_cache_key, save_engine_choice

REPO = Path(__file__).resolve().parent.parent


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    import cv2
    import torch

    v = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
         "opencv": cv2.__version__}
    for mod in ("onnxruntime", "mediapipe", "av"):
        try:
            v[mod] = __import__(mod).__version__
        except Exception:
            v[mod] = None
    try:
        from importlib.metadata import version

        v["stylecam"] = version("stylecam")
    except Exception:
        v["stylecam"] = None
    return v


def machine() -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "threads_used": cpu_threads(),
            "platform": platform.platform(), "arch": platform.machine()}


def seconds_since_process_start() -> float | None:
    """Wall time since this process started (Linux ``/proc``), so start-up imports count too."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime"))
        return time.time() - (btime + start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 3) if xs else None


def _stage_medians(stats: list[FrameStats]) -> dict:
    keys = ("prepare", "segment", "stylize", "composite", "total")
    return {k: round(float(np.median([s.stages()[k] for s in stats])), 3) for k in keys} if stats else {}


def load_frames(source: str, size: tuple[int, int], n: int) -> tuple[list[np.ndarray], float]:
    """Decode up to ``n`` frames (looping) into memory; also return the source's frame rate."""
    src = open_source(source, size=size, mode="all", loop=True, paced=False, max_frames=n)
    try:
        frames = [f.image for f in src.frames()]
        fps = src.fps or 30.0
    finally:
        src.close()
    if not frames:
        raise RuntimeError(f"--source {source}: no frames could be read")
    return frames, fps


def run_bench(config: PipelineConfig, source: str, size: tuple[int, int], frames: int = 300,
              warmup: int = 30, compare_engines: bool = True,
              baselines: dict[str, Callable] | None = None,
              progress: Callable[[str], None] = lambda msg: None) -> dict:
    """Benchmark the pipeline on ``source`` at ``size`` and return the JSON-ready result."""
    t_start = time.perf_counter()
    pipe = Pipeline(config)
    first, _ = load_frames(source, size, 1)
    pipe.process(first[0])
    first_frame_s = time.perf_counter() - t_start
    first_frame_since_start_s = seconds_since_process_start()
    data, src_fps = load_frames(source, size, min(frames, 300))

    result: dict = {"benchmark": "stylecam pipeline", "source": str(source), "size": list(size),
                    "frames": frames, "warmup": warmup, "style": pipe.style.key if pipe.style else None,
                    "person": str(pipe.person), "background": str(pipe.background),
                    "strength": pipe.strength, "segmentation": bool(config.segmentation)}

    # CPU engines: measure all three on the student as it runs here, store the winner for live use.
    comparison = {}
    if (pipe.backend == "cpu" and pipe.style is not None and compare_engines
            and pipe.registry.pack_of(pipe.style).kind != "lut"):  # a LUT pack runs no student engine
        progress("comparing CPU engines (eager channels_last, torch.compile, onnxruntime)…")
        pack = pipe.registry.pack_of(pipe.style)
        w, h = pipe.stylizer.size_for(size[0], size[1], pack)
        net = pack.build()
        comparison = compare_cpu_engines(net, h, w)
        save_engine_choice(engine_cache_key(net, h, w), comparison)
        pipe.close()
        pipe = Pipeline(replace(config, cpu_engine=comparison["chosen"]))
        pipe.process(data[0])
    result["cpu_backend_comparison"] = comparison or None

    progress(f"throughput: {frames} frames unpaced…")
    for i in range(warmup):
        pipe.process(data[i % len(data)])
    stats: list[FrameStats] = []
    done: list[float] = []
    for i in range(frames):
        _, st = pipe.process(data[i % len(data)], t_capture=time.perf_counter())
        stats.append(st)
        done.append(st.t_done)
    intervals = np.diff(done) * 1000
    result["fps_median"] = round(1000.0 / float(np.median(intervals)), 2)
    result["fps_mean"] = round((len(done) - 1) / (done[-1] - done[0]), 2)
    result["stages_ms"] = _stage_medians(stats)
    result["stages_ms_p95"] = {k: _pct([s.stages()[k] for s in stats], 95) for k in ("segment", "stylize", "total")}

    progress(f"latency: source paced at {src_fps:.0f} fps…")
    lat, dropped = _paced_latency(pipe, source, size, frames)
    result["latency_ms_p50"] = _pct(lat, 50)
    result["latency_ms_p95"] = _pct(lat, 95)
    result["latency_frames"] = len(lat)
    result["paced_source_fps"] = round(src_fps, 2)
    result["paced_dropped_frames"] = dropped
    result["first_frame_s"] = round(first_frame_s, 3)  # pipeline construction → first output frame
    result["first_frame_since_process_start_s"] = (round(first_frame_since_start_s, 3)
                                                   if first_frame_since_start_s is not None else None)
    result["backend"] = pipe.backend
    result["backend_reason"] = pipe.backend_reason
    runner = next(iter(pipe.stylizer._runners.values()), None)
    result["cpu_engine"] = runner.engine.name if runner else None

    if baselines:
        stylize_med = result["stages_ms"]["stylize"] + result["stages_ms"]["prepare"]
        result["baselines"] = {}
        for name, fn in baselines.items():
            progress(f"baseline {name}…")
            result["baselines"][name] = _time_baseline(fn, data, stylize_med, result["stages_ms"]["total"])
    pipe.close()
    result.update(machine=machine(), versions=versions(), commit=git_commit())
    return result


def _paced_latency(pipe: Pipeline, source: str, size: tuple[int, int], frames: int) -> tuple[list[float], int]:
    src = open_source(source, size=size, mode="latest", loop=True, paced=True)
    lat: list[float] = []
    try:
        for _ in range(5):  # let the pacing settle
            f = src.read(timeout=2.0)
            if f is not None:
                pipe.process(f.image, f.t_capture)
        d0 = src.dropped
        while len(lat) < frames:
            f = src.read(timeout=2.0)
            if f is None:
                break
            _, st = pipe.process(f.image, f.t_capture)
            lat.append((st.t_done - f.t_capture) * 1000)
        dropped = src.dropped - d0
    finally:
        src.close()
    return lat, dropped


def _time_baseline(fn: Callable, frames: list[np.ndarray], student_ms: float, pipeline_ms: float,
                   runs: int = 5) -> dict:
    """Time a teacher callable on full frames (float RGB NCHW in [0, 1])."""
    import torch

    from .stylizer import prepare

    H, W = frames[0].shape[:2]
    ts = []
    with torch.inference_mode():
        for i in range(runs + 1):
            x = torch.from_numpy(prepare(frames[i % len(frames)], (W, H)))
            t0 = time.perf_counter()
            fn(x)
            if i:  # the first call warms up
                ts.append((time.perf_counter() - t0) * 1000)
    med = float(np.median(ts))
    return {"ms_median": round(med, 2), "runs": runs,
            "speedup_vs_student_stylize": round(med / max(student_ms, 1e-6), 1),
            "speedup_vs_full_pipeline": round(med / max(pipeline_ms, 1e-6), 1)}
