"""Frame-source benchmark (``python -m realtime.benchmarks.sources``); prints JSON.

Decoding through a :class:`~realtime.sources.FrameSource` against a bare ``cv2.VideoCapture`` loop
(the baseline, same run), and the hand-off latency of the latest-frame slot (capture to ``read()``
returning) for a waiting consumer. The clip is a synthetic H.264 scene written to a temporary folder first.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import cv2

from kernels.provenance import provenance
from realtime.benchmarks.common import emit_json, percentile, size_arg, synthetic_frames
from realtime.sinks import Recorder
from realtime.sources import now, open_source


def _bare_read_ms(clip: Path) -> list[float]:
    """The baseline: milliseconds per ``cv2.VideoCapture.read()`` over the whole clip."""
    cap = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG)
    ts = []
    try:
        while True:
            t0 = now()
            ok, _ = cap.read()
            if not ok:
                return ts
            ts.append((now() - t0) * 1000)
    finally:
        cap.release()


def _source_read_ms(clip: Path) -> tuple[list[float], float]:
    """Milliseconds per ``FrameSource.read()`` (``mode="all"``) over the clip, and the wall time in seconds."""
    ts = []
    t_start = now()
    with open_source(clip, mode="all") as src:
        while True:
            t0 = now()
            f = src.read(10.0)
            if f is None:
                return ts, now() - t_start
            ts.append((now() - t0) * 1000)


def _handoff_ms(clip: Path, max_frames: int) -> list[float]:
    """Capture → ``read()`` returning, for a consumer waiting on the paced latest-frame slot."""
    handoff = []
    with open_source(clip, mode="latest", paced=True, max_frames=max_frames) as src:
        while (f := src.read(5.0)) is not None:
            handoff.append((now() - f.t_capture) * 1000)
    return handoff


def bench_sources(size: tuple[int, int] = (640, 480), frames: int = 300, fps: float = 30.0) -> dict[str, Any]:
    """Measure frame sources on a synthetic clip of ``frames`` frames at ``size``.

    Returns:
        A JSON-ready dict with machine, versions, commit and medians in milliseconds.
    """
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "bench.mkv"
        with Recorder(clip, size[0], size[1], fps) as rec:
            for i, img in enumerate(synthetic_frames(size, frames)):
                rec.write(img, i / fps, copy=False)
        bare_ms = _bare_read_ms(clip)
        src_ms, src_wall = _source_read_ms(clip)
        handoff = _handoff_ms(clip, min(frames, int(3 * fps)))

    return {
        "benchmark": "sources",
        "size": list(size),
        "frames": len(src_ms),
        "decode_ms_median": {
            "baseline_cv2_read": percentile(bare_ms, 50),
            "frame_source_read": percentile(src_ms, 50),
            "frame_source_fps": round(len(src_ms) / src_wall, 1),
            "baseline_fps": round(len(bare_ms) / (sum(bare_ms) / 1000), 1),
        },
        "latest_slot_handoff_ms": {"median": percentile(handoff, 50), "p95": percentile(handoff, 95)},
        **provenance(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m realtime.benchmarks.sources", description="Benchmark frame sources.")
    parser.add_argument("--size", type=size_arg, default="640x480", help="WxH (default 640x480)")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--json", default=None, help="also write the result to this file")
    args = parser.parse_args(argv)
    emit_json(bench_sources(args.size, args.frames), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
