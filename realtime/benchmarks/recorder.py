"""Recorder benchmark (``python -m realtime.benchmarks.recorder``); prints JSON.

Colour conversion against PyAV's swscale path (the baseline, same run), encode+mux per frame and
the top sustained rate for ``.mkv`` and ``.mp4``, CPU time per frame, and what ``write()`` costs
the pipeline when frames arrive at the camera rate.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from kernels.provenance import provenance
from realtime.benchmarks.common import bench_frames, emit_json, percentile, size_arg
from realtime.errors import DeviceError, InputError
from realtime.sinks import X264_PRESETS, Recorder


class _TimedRecorder(Recorder):
    """A :class:`Recorder` that notes how long encoding and muxing each frame takes (in its encoder thread)."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.encode_ms: list[float] = []
        super().__init__(*args, **kwargs)

    def _encode_one(self, img: np.ndarray, pts: int) -> None:
        t0 = time.perf_counter()
        super()._encode_one(img, pts)
        self.encode_ms.append((time.perf_counter() - t0) * 1000)


def _median_ms(fn: Callable[[np.ndarray], Any], imgs: list[np.ndarray], reps: int = 3) -> float:
    ts = []
    for _ in range(reps):
        for img in imgs[: min(len(imgs), 100)]:
            t0 = time.perf_counter()
            fn(img)
            ts.append((time.perf_counter() - t0) * 1000)
    return float(np.median(ts))


def _conversion(imgs: list[np.ndarray]) -> dict[str, float]:
    """BGR → YUV 4:2:0 frame as the recorder converts it (OpenCV) against PyAV's swscale (the baseline)."""
    conv_cv2 = _median_ms(
        lambda im: av.VideoFrame.from_ndarray(cv2.cvtColor(im, cv2.COLOR_BGR2YUV_I420), format="yuv420p"), imgs
    )
    conv_sws = _median_ms(lambda im: av.VideoFrame.from_ndarray(im, format="bgr24").reformat(format="yuv420p"), imgs)
    return {
        "opencv_i420": round(conv_cv2, 3),
        "baseline_pyav_swscale": round(conv_sws, 3),
        "speedup_vs_baseline": round(conv_sws / max(conv_cv2, 1e-9), 2),
    }


def _unpaced(path: Path, imgs: list[np.ndarray], fps: float, codec: str, preset: str) -> dict[str, Any]:
    """Record ``imgs`` as fast as the encoder takes them: per-frame encode cost, CPU time, top rate."""
    h, w = imgs[0].shape[:2]
    t_start, cpu_start = time.perf_counter(), time.process_time()
    rec = _TimedRecorder(path, w, h, fps, codec, preset=preset)
    for i, img in enumerate(imgs):
        rec.write(img, i / fps)
    rec.close()
    wall = time.perf_counter() - t_start
    # CPU time of all threads: what recording costs the machine, robust to other load (unlike wall time).
    cpu_ms = (time.process_time() - cpu_start) * 1000 / len(imgs)
    st = rec.stats()
    return {
        "codec": rec.codec,
        "preset": rec.preset if rec.codec == "libx264" else None,
        "encode_mux_ms_median": percentile(rec.encode_ms, 50),
        "encode_mux_ms_p95": percentile(rec.encode_ms, 95),
        "cpu_ms_per_frame": round(cpu_ms, 2),
        "cpu_cores_at_fps": round(cpu_ms * fps / 1000, 2),
        "max_sustained_fps": round(len(imgs) / wall, 1),
        "realtime_factor": round(len(imgs) / wall / fps, 2),
        "bitrate_kbps": round(st["bytes"] * 8 / 1000 / st["duration_s"], 1),
    }


def _paced(path: Path, imgs: list[np.ndarray], fps: float, codec: str, preset: str) -> dict[str, Any]:
    """Live use: frames arrive at the camera rate; what does ``write()`` cost the pipeline, and does it stall?"""
    h, w = imgs[0].shape[:2]
    n_paced = min(len(imgs), round(5 * fps))
    write_ms = []
    rec = _TimedRecorder(path, w, h, fps, codec, preset=preset)
    t_next = time.perf_counter()
    for img in imgs[:n_paced]:
        t_next += 1.0 / fps
        time.sleep(max(0.0, t_next - time.perf_counter()))
        t0 = time.perf_counter()
        rec.write(img)
        write_ms.append((time.perf_counter() - t0) * 1000)
    rec.close()
    return {
        "frames": n_paced,
        "write_call_ms_median": percentile(write_ms, 50),
        "write_call_ms_p95": percentile(write_ms, 95),
        "stalls": rec.stalls,
        "blocked_ms": round(rec.blocked_ms, 1),
    }


def bench_recorder(
    size: tuple[int, int] = (640, 480),
    frames: int = 300,
    fps: float = 30.0,
    codec: str = "auto",
    source: str | None = None,
    out_dir: str | None = None,
    preset: str = "veryfast",
) -> dict[str, Any]:
    """Measure the recorder: conversion, encode+mux per frame, top sustained rate, and write() cost when paced.

    The colour conversion is compared with PyAV's default swscale path (the baseline) in the same run.

    Returns:
        A JSON-ready dict with machine, versions, commit and medians in milliseconds.
    """
    imgs = bench_frames(source, size, frames)
    h, w = imgs[0].shape[:2]
    convert = _conversion(imgs)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        containers = {ext: _unpaced(Path(tmp) / f"bench.{ext}", imgs, fps, codec, preset) for ext in ("mkv", "mp4")}
        containers["paced_mkv"] = _paced(Path(tmp) / "paced.mkv", imgs, fps, codec, preset)
    return {
        "benchmark": "recorder",
        "size": [w, h],
        "frames": len(imgs),
        "fps": fps,
        "source": source or "synthetic",
        "convert_ms_median": convert,
        "containers": containers,
        **provenance(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m realtime.benchmarks.recorder", description="Benchmark the recorder.")
    parser.add_argument("--size", type=size_arg, default="640x480", help="WxH (default 640x480)")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--codec", default="auto", choices=["auto", "libx264", "h264_nvenc"])
    parser.add_argument("--preset", default="veryfast", choices=X264_PRESETS, help="libx264 preset")
    parser.add_argument("--source", default=None, help="video or image to encode (default: synthetic scene)")
    parser.add_argument("--json", default=None, help="also write the result to this file")
    args = parser.parse_args(argv)
    try:
        result = bench_recorder(args.size, args.frames, args.fps, args.codec, args.source, preset=args.preset)
    except (InputError, DeviceError) as exc:
        print(f"stylecam: error: {exc}", file=sys.stderr)
        return 2
    emit_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
