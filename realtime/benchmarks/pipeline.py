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
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from kernels.provenance import provenance
from realtime.benchmarks.common import load_frames, percentile
from realtime.pipeline import FrameStats, Pipeline, PipelineConfig
from realtime.sources import open_source
from realtime.stylizer import compare_cpu_engines, cpu_threads, engine_cache_key, save_engine_choice

def seconds_since_process_start() -> float | None:
    """Wall time since this process started (Linux ``/proc``), so start-up imports count too."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime"))
        return time.time() - (btime + start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _stage_medians(stats: list[FrameStats]) -> dict:
    keys = ("prepare", "segment", "stylize", "composite", "total")
    return {k: round(float(np.median([s.stages()[k] for s in stats])), 3) for k in keys} if stats else {}


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

    comparison = {}
    if compare_engines and _runs_student_on_cpu(pipe):
        comparison = _compare_cpu_engines(pipe, size, progress)
        pipe.close()
        pipe = Pipeline(replace(config, cpu_engine=comparison["chosen"]))
        pipe.process(data[0])
    result["cpu_backend_comparison"] = comparison or None

    _wait_for_guide(pipe, data, progress)
    progress(f"throughput: {frames} frames unpaced…")
    result.update(_throughput(pipe, data, frames, warmup))

    progress("same-process comparison: alternating blocks of frames…")
    result["same_process"] = _same_process(pipe, data, blocks=6, per_block=max(5, min(15, frames // 20)))

    progress(f"latency: source paced at {src_fps:.0f} fps…")
    result.update(_latency(pipe, source, size, frames, src_fps))
    result["first_frame_s"] = round(first_frame_s, 3)  # pipeline construction → first output frame
    result["first_frame_since_process_start_s"] = (round(first_frame_since_start_s, 3)
                                                   if first_frame_since_start_s is not None else None)
    result.update(_engines_in_use(pipe))

    if baselines:
        stylize_med = result["stages_ms"]["stylize"] + result["stages_ms"]["prepare"]
        result["baselines"] = {}
        for name, fn in baselines.items():
            progress(f"baseline {name}…")
            result["baselines"][name] = _time_baseline(fn, data, stylize_med, result["stages_ms"]["total"])
    pipe.close()
    result.update(provenance({"threads_used": cpu_threads()}))
    return result


def _runs_student_on_cpu(pipe: Pipeline) -> bool:
    """Whether the pipeline runs a student network on the CPU (a LUT pack runs no student engine)."""
    return (pipe.backend == "cpu" and pipe.style is not None and pipe.style.student
            and pipe.registry.pack_of(pipe.style).kind != "lut")


def _compare_cpu_engines(pipe: Pipeline, size: tuple[int, int], progress) -> dict:
    """Measure all three CPU engines on the student as it runs here; store the winner for live use."""
    progress("comparing CPU engines (eager channels_last, torch.compile, onnxruntime)…")
    pipe.stylizer.wait_ready()  # no background engine work may run while engines are timed
    pack = pipe.registry.pack_of(pipe.style)
    w, h = pipe.stylizer.size_for(size[0], size[1], pack)
    net = pack.build()
    comparison = compare_cpu_engines(net, h, w)
    save_engine_choice(engine_cache_key(net, h, w), comparison)
    return comparison


def _throughput(pipe: Pipeline, data: list[np.ndarray], frames: int, warmup: int) -> dict:
    """Frame rate and per-stage medians (and 95th percentiles) of ``frames`` unpaced frames after ``warmup``."""
    for i in range(warmup):
        pipe.process(data[i % len(data)])
    stats: list[FrameStats] = []
    done: list[float] = []
    for i in range(frames):
        _, st = pipe.process(data[i % len(data)], t_capture=time.perf_counter())
        stats.append(st)
        done.append(st.t_done)
    intervals = np.diff(done) * 1000
    result = {"fps_median": round(1000.0 / float(np.median(intervals)), 2),
              "fps_mean": round((len(done) - 1) / (done[-1] - done[0]), 2)}
    gpu = [s.gpu_ms for s in stats if s.gpu_ms]
    if gpu:  # the device path on CUDA: medians of the CUDA-event spans per stage
        result["gpu_stages_ms"] = {k: round(float(np.median([g[k] for g in gpu])), 4) for k in gpu[0]}
    result["stages_ms"] = _stage_medians(stats)
    result["stages_ms_p95"] = {k: percentile([s.stages()[k] for s in stats], 95) for k in ("segment", "stylize", "total")}
    return result


def _latency(pipe: Pipeline, source: str, size: tuple[int, int], frames: int, src_fps: float) -> dict:
    """Capture-to-output latency with the source paced at its own rate."""
    lat, dropped = _paced_latency(pipe, source, size, frames)
    return {"latency_ms_p50": percentile(lat, 50), "latency_ms_p95": percentile(lat, 95),
            "latency_frames": len(lat), "paced_source_fps": round(src_fps, 2), "paced_dropped_frames": dropped}


def _engines_in_use(pipe: Pipeline) -> dict:
    """The backend, the CPU engine, the guide, and every engine the stylizer built or compared."""
    runner = next(iter(pipe.stylizer._runners.values()), None)
    return {"backend": pipe.backend, "backend_reason": pipe.backend_reason,
            "cpu_engine": runner.engine.name if runner else None, "guide": _guide_result(pipe),
            "engines": pipe.stylizer.engines(),  # every pack and size in use (a split's second style too)
            "engine_comparisons": pipe.stylizer.comparisons()}


def _wait_for_guide(pipe: Pipeline, data: list[np.ndarray], progress, timeout_s: float = 180.0) -> None:
    """A guided style is timed with its guide running: feed frames until its teacher has answered."""
    key = pipe.style.key if pipe.style else None
    if key is None or not pipe.guides.guided(key) or pipe.guides.mode != "live":
        return
    progress("waiting for the guide's teacher (fetch, load, first keyframe)…")
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < timeout_s:
        pipe.process(data[i % len(data)])
        i += 1
        st = pipe.guides.status(key)
        if st is not None and (st.state == "default" or st.keyframes >= 2):
            return
        time.sleep(0.02)


def _guide_result(pipe: Pipeline) -> dict | None:
    """The guide's teacher ms (median over the keyframes of the run) and keyframe interval, for the JSON."""
    key = pipe.style.key if pipe.style else None
    if key is None or not pipe.guides.guided(key):
        return None
    st = pipe.guides.status(key)
    w = pipe.guides.workers.get(key)
    times = w.teacher_times if w is not None else pipe.guides.teacher_ms
    return {"text": pipe.guide_text(), "state": st.state if st else None,
            "teacher": pipe.style.guide.teacher_name, "keyframe": list(pipe.style.guide.keyframe),
            "teacher_ms_median": round(float(np.median(times)), 2) if times else None,
            "keyframe_interval_ms": round(st.interval_ms, 1) if st else None,
            "keyframes": st.keyframes if st else 0}
def _same_process(pipe: Pipeline, data: list[np.ndarray], blocks: int = 3, per_block: int = 30) -> dict:
    """The pipeline as configured against variants of it, in alternating blocks of the same frames.

    Other work on a shared machine moves absolute numbers a lot; ratios of blocks interleaved in one
    process do not. Variants: torch with one intra-op thread instead of its default, and for two
    styles a frame the background's style in fp32 when it runs in bfloat16.
    """
    import torch

    threads = torch.get_num_threads()

    def set_threads(n: int):
        return lambda: torch.set_num_threads(n)

    variants: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {"as_configured": (lambda: None, lambda: None)}
    if threads > 1:
        variants["torch_threads_1"] = (set_threads(1), set_threads(threads))
    if pipe.split_precision == "bf16" and pipe.person.kind == "style" and pipe.background.kind == "style":
        variants["split_fp32"] = (lambda: setattr(pipe, "split_precision", "fp32"),
                                  lambda: setattr(pipe, "split_precision", "bf16"))
    runs: dict[str, list[FrameStats]] = {k: [] for k in variants}
    intervals: dict[str, list[float]] = {k: [] for k in variants}
    i = 0
    for _ in range(blocks):
        for name, (enter, leave) in variants.items():
            enter()
            try:
                pipe.process(data[i % len(data)])  # the first frame of a block settles the switch
                done = []
                for _ in range(per_block):
                    i += 1
                    _, st = pipe.process(data[i % len(data)])
                    runs[name].append(st)
                    done.append(st.t_done)
                intervals[name] += list(np.diff(done) * 1000)
            finally:
                leave()
    out: dict = {"blocks": blocks, "frames_per_block": per_block, "torch_threads": threads}
    base = None
    for name in variants:
        fps = 1000.0 / float(np.median(intervals[name]))
        base = base or fps
        out[name] = {"fps_median": round(fps, 2), "fps_ratio_to_as_configured": round(fps / base, 3),
                     "total_ms_p95": percentile([s.total_ms for s in runs[name]], 95),
                     "stages_ms": _stage_medians(runs[name])}
    return out


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

    from realtime.stylizer import prepare

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
