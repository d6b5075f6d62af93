"""Segmentation benchmark (``python -m realtime.benchmarks.segmentation``); prints JSON.

For each model, these run in turn on every frame (interleaved, so a busy machine slows all of
them alike): `Segmenter.segment` with smoothing 0.5; its parts (downscale + colour conversion,
MediaPipe inference on the small image, smoothing); and a naive baseline that converts the
whole frame to RGB and lets MediaPipe resize it (it also returns a full-size mask).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import mediapipe as mp
import numpy as np

from kernels.provenance import provenance
from realtime.demo import DEMO_CLIP
from realtime.errors import InputError, StylecamError
from realtime.segmentation import MODEL_FILES, MODEL_INPUT_SIZES, Segmenter, downscale_area, smooth_mask

FRAME_SIZE = (640, 480)


def _read_clip(clip: Path, n: int) -> list[np.ndarray]:
    """Up to ``n`` frames of ``clip`` as 640x480 uint8 BGR.

    Raises:
        InputError: The clip is missing, unreadable or has no video frames.
    """
    video: list[np.ndarray] = []
    try:
        with av.open(str(clip)) as container:
            for f in container.decode(video=0):
                video.append(cv2.resize(f.to_ndarray(format="bgr24"), FRAME_SIZE, interpolation=cv2.INTER_AREA))
                if len(video) == n:
                    break
    except (OSError, av.error.FFmpegError) as err:
        raise InputError(f"cannot read benchmark clip {clip}: {err}") from None
    if not video:
        raise InputError(f"benchmark clip {clip} has no video frames")
    return video


def _stats(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {"median_ms": round(statistics.median(ms), 3), "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 3)}


class _Variants:
    """The timed variants of one model, as callables taking a BGR frame.

    ``direct`` is a second segmenter that the parts and the baseline call MediaPipe through, with
    their own ever-increasing timestamps, so they do not disturb ``seg``'s temporal smoothing.
    """

    def __init__(self, seg: Segmenter, direct: Segmenter, size: tuple[int, int], first: np.ndarray):
        self.seg, self.direct, self.size = seg, direct, size
        self.clock = 1 << 40  # timestamps for direct MediaPipe calls, always increasing
        self.prev = seg.segment(first)
        self.small = self._small_rgb(first)

    def _small_rgb(self, frame: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(cv2.cvtColor(downscale_area(frame, self.size), cv2.COLOR_BGR2RGB))

    def _mediapipe(self, rgb: np.ndarray) -> None:
        self.clock += 1
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)
        np.array(self.direct._segmenter.segment_for_video(image, self.clock).confidence_masks[0].numpy_view())

    def downscale_and_rgb(self, frame: np.ndarray) -> None:
        self.small = cv2.cvtColor(downscale_area(frame, self.size), cv2.COLOR_BGR2RGB)

    def inference(self, frame: np.ndarray) -> None:
        self._mediapipe(self.small)

    def smoothing(self, frame: np.ndarray) -> None:
        smooth_mask(self.prev, self.seg._prev, 0.5)

    def baseline(self, frame: np.ndarray) -> None:
        self._mediapipe(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))

    def all(self) -> dict[str, Callable[[np.ndarray], object]]:
        return {"segment": self.seg.segment, "downscale_and_rgb": self.downscale_and_rgb,
                "inference": self.inference, "smoothing": self.smoothing,
                "baseline_full_frame_to_mediapipe": self.baseline}


def _time_interleaved(variants: dict[str, Callable[[np.ndarray], object]], video: list[np.ndarray],
                      frames: int, warmup: int) -> dict[str, list[float]]:
    """Milliseconds per call of each variant, all run on each frame in turn; the first ``warmup`` untimed."""
    times: dict[str, list[float]] = {k: [] for k in variants}
    for i in range(warmup + frames):
        f = video[i % len(video)]
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn(f)
            if i >= warmup:
                times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def bench_model(model: str, video: list[np.ndarray], frames: int, warmup: int) -> dict:
    """Median and p90 of each variant for one model, and the speed-up over the baseline."""
    with Segmenter(model, smoothing=0.5) as seg, Segmenter(model, smoothing=0.0) as direct:
        variants = _Variants(seg, direct, MODEL_INPUT_SIZES[model], video[0])
        times = _time_interleaved(variants.all(), video, frames, warmup)
        mask_hw = list(seg.mask_size)
    out = {k: _stats(v) for k, v in times.items()}
    return {
        "mask_hw": mask_hw,
        "segment": out["segment"],
        "parts": {k: out[k] for k in ("downscale_and_rgb", "inference", "smoothing")},
        "baseline_full_frame_to_mediapipe": out["baseline_full_frame_to_mediapipe"],
        "speedup_vs_baseline": round(
            out["baseline_full_frame_to_mediapipe"]["median_ms"] / out["segment"]["median_ms"], 2
        ),
    }


def benchmark(frames: int = 100, warmup: int = 10, clip: str | Path | None = None) -> dict:
    """Time segmentation per frame on 640x480 video frames; the numbers behind the documented budget.

    Args:
        frames: Frames timed per variant (after ``warmup``).
        warmup: Untimed frames first.
        clip: Video to take frames from; default the demo clip.

    Returns:
        JSON-ready results: machine, versions, commit, and per model and variant the median and
        p90 in milliseconds.

    Raises:
        InputError: The clip is missing or unreadable.
    """
    clip = Path(clip) if clip is not None else DEMO_CLIP
    video = _read_clip(clip, frames + warmup)
    return {
        "benchmark": "segmentation",
        "input": f"{clip.name}, 640x480 BGR, {frames} frames after {warmup} warm-up, variants interleaved",
        **provenance(),
        "models": {model: bench_model(model, video, frames, warmup) for model in MODEL_FILES},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m realtime.benchmarks.segmentation",
                                     description="Time person segmentation; prints JSON.")
    parser.add_argument("--frames", type=int, default=100, help="timed frames per variant (default: %(default)s)")
    parser.add_argument("--clip", type=Path, default=None, help="video to take frames from (default: the demo clip)")
    args = parser.parse_args(argv)
    try:
        print(json.dumps(benchmark(frames=args.frames, clip=args.clip), indent=2))
    except StylecamError as err:
        print(f"stylecam: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
