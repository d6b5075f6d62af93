"""What the recorder's crash safety costs and buys (``python -m realtime.benchmarks.crash_safety``); prints JSON.

Two recorder settings, run alternately in one process on the same synthetic frames:

* ``baseline`` — 1000 ms clusters/fragments, the file created when recording starts, no space held back;
* ``current`` — :data:`~realtime.sinks.FLUSH_INTERVAL_MS` clusters/fragments, the file created with its first
  cluster, :data:`~realtime.sinks.RESERVE_BYTES` held back for a full disk (the defaults).

For each: encode+mux milliseconds per frame (median and p95), CPU milliseconds per frame, bitrate, the time to
open the recorder; the muxing alone (the same encoded packets written again, many times: the part these settings
change, free of the encoder's noise), in microseconds per frame; and the crash exposure: after each frame is encoded, how many frames the file on disk does
not yet hold (what ``kill -9`` at that moment would lose), and at how many of those moments a file existed that
does not open.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import numpy as np

from kernels.provenance import provenance
from realtime.benchmarks.common import emit_json, synthetic_frames
from realtime.errors import InputError
from realtime.sinks import (
    CONTAINERS,
    FLUSH_INTERVAL_MS,
    RESERVE_BYTES,
    OutputFile,
    Recorder,
    muxer_options,
    probe_recording,
)
from realtime.sizes import parse_size

BASELINE_FLUSH_MS = 1000


class _EagerFile(OutputFile):
    """The file as it was before: created (empty) when recording starts, no reserve."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, reserve=0)
        self.commit()


SETTINGS = {
    "baseline": {"flush_interval_ms": BASELINE_FLUSH_MS, "opener": _EagerFile},
    "current": {"flush_interval_ms": FLUSH_INTERVAL_MS, "opener": OutputFile},
}


class _Timed(Recorder):
    encode_ms: list[float]

    def _encode_one(self, img: np.ndarray, pts: int) -> None:
        t0 = time.perf_counter()
        super()._encode_one(img, pts)
        self.encode_ms.append((time.perf_counter() - t0) * 1000)


def _throughput(path: Path, frames: list[np.ndarray], fps: float, setting: dict[str, Any]) -> dict[str, float]:
    h, w = frames[0].shape[:2]
    cpu0, t0 = time.process_time(), time.perf_counter()
    rec = _Timed(path, w, h, fps, "libx264", **setting)
    open_ms = (time.perf_counter() - t0) * 1000
    rec.encode_ms = []
    for i, img in enumerate(frames):
        rec.write(img, i / fps)
    rec.close()
    cpu_ms = (time.process_time() - cpu0) * 1000 / len(frames)
    return {
        "open_ms": open_ms,
        "encode_mux_ms": statistics.median(rec.encode_ms),
        "encode_mux_ms_p95": float(np.percentile(rec.encode_ms, 95)),
        "cpu_ms_per_frame": cpu_ms,
        "kbps": path.stat().st_size * 8 / 1000 / (len(frames) / fps),
    }


def _mux_only(packets_from: Path, out: Path, setting: dict[str, Any], reps: int) -> float:
    """Median microseconds per frame to mux (and write) the packets of ``packets_from`` into ``out``."""
    with av.open(str(packets_from)) as src:
        stream = src.streams.video[0]
        packets = [p for p in src.demux(stream) if p.size]
        per_frame = []
        for _ in range(reps):
            f = setting["opener"](out)
            fmt = CONTAINERS[out.suffix]
            t0 = time.perf_counter()
            with av.open(f, mode="w", format=fmt, options=muxer_options(fmt, setting["flush_interval_ms"])) as dst:
                o = dst.add_stream_from_template(stream)
                dst.start_encoding()
                header = f.size
                for p in packets:
                    p.stream = o
                    dst.mux(p)
                    if f.size > header:
                        f.commit()  # as the recorder does: the file appears with its first cluster
            f.commit()
            per_frame.append((time.perf_counter() - t0) * 1e6 / len(packets))
            f.close()
            os.unlink(out)
    return statistics.median(per_frame)


def _exposure(path: Path, frames: list[np.ndarray], fps: float, setting: dict[str, Any]) -> dict[str, Any]:
    """After each encoded frame: frames not yet decodable from disk, and whether a file exists but won't open."""
    h, w = frames[0].shape[:2]
    worst, unopenable, first_on_disk = 0, 0, None
    rec = Recorder(path, w, h, fps, "libx264", **setting)
    try:
        for n, img in enumerate(frames, 1):
            rec.write(img, (n - 1) / fps)
            while rec.frames_written < n:
                time.sleep(0.001)
            exists = path.exists() and path.stat().st_size > 0
            held = probe_recording(path)[0] if exists else 0
            unopenable += exists and held == 0
            if held and first_on_disk is None:
                first_on_disk = n
            worst = max(worst, n - held)
    finally:
        rec.close()
    return {
        "worst_lag_frames": worst,
        "worst_lag_s": round(worst / fps, 3),
        "file_exists_but_does_not_open": int(unopenable),
        "first_decodable_after_frames": first_on_disk,
    }


def bench_crash_safety(size: tuple[int, int] = (640, 480), frames: int = 300, fps: float = 30.0,
                       reps: int = 3, exposure_frames: int = 90) -> dict[str, Any]:
    """Run both settings ``reps`` times alternately; return medians and current/baseline ratios."""
    imgs = synthetic_frames(size, frames)
    runs: dict[str, dict[str, dict[str, list[float]]]] = {k: {"mkv": {}, "mp4": {}} for k in SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(reps):
            for name, setting in SETTINGS.items():
                for ext in ("mkv", "mp4"):
                    path = Path(tmp) / f"{name}-{rep}.{ext}"
                    for key, value in _throughput(path, imgs, fps, setting).items():
                        runs[name][ext].setdefault(key, []).append(value)
                    path.unlink()
        reference = Path(tmp) / "reference.mkv"
        _throughput(reference, imgs, fps, SETTINGS["current"])
        mux_us = {name: {ext: _mux_only(reference, Path(tmp) / f"mux.{ext}", setting, reps=5 * reps)
                         for ext in ("mkv", "mp4")} for name, setting in SETTINGS.items()}
        exposure = {
            name: {ext: _exposure(Path(tmp) / f"exp-{name}.{ext}", imgs[:exposure_frames], fps, setting)
                   for ext in ("mkv", "mp4")}
            for name, setting in SETTINGS.items()
        }
    result: dict[str, Any] = {"benchmark": "recorder crash safety", "size": list(size), "frames": frames,
                              "fps": fps, "reps": reps, "codec": "libx264", "settings": {}}
    for name, setting in SETTINGS.items():
        result["settings"][name] = {
            "flush_interval_ms": setting["flush_interval_ms"],
            "reserve_bytes": RESERVE_BYTES if setting["opener"] is OutputFile else 0,
            **{ext: {**{k: round(statistics.median(v), 3) for k, v in runs[name][ext].items()},
                     "mux_only_us_per_frame": round(mux_us[name][ext], 1),
                     **exposure[name][ext]} for ext in ("mkv", "mp4")},
        }
    cur, base = result["settings"]["current"], result["settings"]["baseline"]
    result["ratio_current_to_baseline"] = {
        ext: {k: round(cur[ext][k] / base[ext][k], 3)
              for k in ("encode_mux_ms", "cpu_ms_per_frame", "mux_only_us_per_frame", "kbps")}
        for ext in ("mkv", "mp4")
    }
    result.update(provenance())
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m realtime.benchmarks.crash_safety",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="640x480", help="WxH (default 640x480)")
    parser.add_argument("--frames", type=int, default=300, help="frames per throughput run (default 300)")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--reps", type=int, default=3, help="alternating runs per setting (default 3)")
    parser.add_argument("--json", default=None, help="also write the result to this file")
    args = parser.parse_args(argv)
    try:
        size = parse_size(args.size)
    except InputError as exc:
        parser.error(str(exc))
    if args.frames < 2 or args.reps < 1 or not args.fps > 0:
        parser.error("--frames must be >= 2, --reps >= 1 and --fps > 0")
    result = bench_crash_safety(size, args.frames, args.fps, args.reps, exposure_frames=min(args.frames, 90))
    emit_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
