"""Person segmentation on a real portrait (scikit-image's public-domain astronaut photo)."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from realtime.errors import InputError
from realtime.segmentation import (MODEL_INPUT_SIZES, Segmenter, _native_chatter_to_log, downscale_area, model_path,
                                   smooth_mask)


@pytest.fixture(scope="module")
def astronaut_bgr() -> np.ndarray:
    """The portrait stretched to a 640x480 webcam frame, BGR like a camera delivers."""
    rgb = skimage.data.astronaut()  # (512, 512, 3) uint8
    return cv2.cvtColor(cv2.resize(rgb, (640, 480), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="module")
def jump_frames() -> tuple[np.ndarray, np.ndarray]:
    """The person (portrait at 320x320) at the bottom left, then jumped to the bottom right of a grey frame."""
    small = cv2.resize(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR), (320, 320), interpolation=cv2.INTER_AREA)
    frames = []
    for x in (0, 320):
        frame = np.full((480, 640, 3), 128, np.uint8)
        frame[160:, x : x + 320] = small
        frames.append(frame)
    return frames[0], frames[1]


def box(mask: np.ndarray, y0: float, y1: float, x0: float, x1: float) -> float:
    """Mean of a mask over a box given in fractions of its height and width."""
    h, w = mask.shape
    return float(mask[int(y0 * h) : int(y1 * h), int(x0 * w) : int(x1 * w)].mean())


# Boxes of the person on the left of `jump_frames` (its body) and on the right.
LEFT_BODY = (0.75, 1.0, 0.06, 0.3)
RIGHT_BODY = (0.75, 1.0, 0.56, 0.8)


@pytest.mark.parametrize("model", ["landscape", "square"])
def test_mask_covers_the_person(model: str, astronaut_bgr: np.ndarray) -> None:
    with Segmenter(model, smoothing=0.0) as seg:
        mask = seg.segment(astronaut_bgr)
    w, h = MODEL_INPUT_SIZES[model]
    assert mask.shape == (h, w) == seg.mask_size
    assert mask.dtype == np.float32
    assert 0.0 <= mask.min() and mask.max() <= 1.0
    assert box(mask, 0.15, 0.35, 0.37, 0.55) > 0.9  # face
    assert box(mask, 0.65, 1.0, 0.1, 0.5) > 0.9  # orange suit
    assert box(mask, 0.0, 0.1, 0.9, 1.0) < 0.05  # wall, top right
    assert box(mask, 0.05, 0.45, 0.72, 0.88) < 0.05  # model space shuttle behind her


def test_rgb_input_matches_bgr(astronaut_bgr: np.ndarray) -> None:
    with Segmenter(smoothing=0.0) as seg:
        from_bgr = seg.segment(astronaut_bgr)
        from_rgb = seg.segment(np.ascontiguousarray(astronaut_bgr[..., ::-1]), rgb=True)
        swapped = seg.segment(np.ascontiguousarray(astronaut_bgr[..., ::-1]))  # wrong order on purpose
    np.testing.assert_allclose(from_rgb, from_bgr, atol=1e-5)
    assert np.abs(swapped - from_bgr).max() > 1e-3  # the channel order really reaches the model


def test_no_smoothing_follows_each_frame(jump_frames: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = jump_frames
    with Segmenter(smoothing=0.0) as seg, Segmenter(smoothing=0.0) as fresh:
        for _ in range(3):
            seg.segment(a)
        after_jump = seg.segment(b)
        np.testing.assert_allclose(after_jump, fresh.segment(b), atol=1e-5)
    assert box(after_jump, *LEFT_BODY) < 0.05
    assert box(after_jump, *RIGHT_BODY) > 0.8


def test_plain_ema_lags_exactly(jump_frames: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = jump_frames
    with Segmenter(smoothing=0.9, motion_scale=None) as seg, Segmenter(smoothing=0.0) as raw:
        ra, rb = raw.segment(a), raw.segment(b)
        for _ in range(3):
            seg.segment(a)
        masks = [seg.segment(b) for _ in range(3)]
    # out_k = 0.9 * out_{k-1} + 0.1 * raw: after k frames, 0.9**k of the old mask is left (a ghost).
    for k, mask in enumerate(masks, start=1):
        np.testing.assert_allclose(mask, 0.9**k * ra + (1 - 0.9**k) * rb, atol=1e-4)
    assert box(masks[0], *LEFT_BODY) > 0.7


def test_motion_aware_smoothing_leaves_no_ghost(jump_frames: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = jump_frames
    with Segmenter(smoothing=0.9) as seg:
        for _ in range(3):
            seg.segment(a)
        mask = seg.segment(b)
    assert box(mask, *LEFT_BODY) < 0.1
    assert box(mask, *RIGHT_BODY) > 0.7


def test_smoothing_reduces_flicker_on_a_still_noisy_scene(astronaut_bgr: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    frames = [
        np.clip(astronaut_bgr + rng.normal(0, 12, astronaut_bgr.shape), 0, 255).astype(np.uint8) for _ in range(10)
    ]

    def flicker(strength: float) -> float:
        with Segmenter(smoothing=strength) as seg:
            masks = [seg.segment(f) for f in frames]
        return float(np.mean([np.abs(m1 - m0).mean() for m0, m1 in zip(masks[2:], masks[3:])]))

    off, on = flicker(0.0), flicker(0.9)
    assert off > 0
    assert on < 0.5 * off


def test_smooth_mask_rules() -> None:
    rng = np.random.default_rng(1)
    prev = rng.random((4, 5), dtype=np.float32)
    raw = rng.random((4, 5), dtype=np.float32)
    np.testing.assert_array_equal(smooth_mask(None, raw, 0.9), raw)
    np.testing.assert_array_equal(smooth_mask(prev, raw, 0.0), raw)
    np.testing.assert_allclose(smooth_mask(prev, raw, 0.5, None), 0.5 * prev + 0.5 * raw, atol=1e-6)
    # A change of motion_scale or more is taken at once; a tiny one is smoothed with the full strength.
    jump = smooth_mask(np.zeros((1, 2), np.float32), np.array([[1.0, 0.01]], np.float32), 0.8, 0.5)
    np.testing.assert_allclose(jump, [[1.0, 0.01 * (1 - 0.8 * 0.98)]], atol=1e-6)
    assert smooth_mask(prev, raw, 0.7).dtype == np.float32


def test_timestamps_may_repeat_go_back_or_be_missing(astronaut_bgr: np.ndarray) -> None:
    with Segmenter() as seg:
        for ts in (1000, 1000, 500, None, 0, None):
            assert seg.segment(astronaut_bgr, ts).shape == seg.mask_size


def test_used_from_other_threads(astronaut_bgr: np.ndarray) -> None:
    seg = Segmenter(smoothing=0.0)
    expected = seg.segment(astronaut_bgr)
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                results.append(seg.segment(astronaut_bgr))
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    seg.close()
    assert not errors
    assert len(results) == 10
    for r in results:
        np.testing.assert_allclose(r, expected, atol=1e-5)


def test_close_and_context_manager(astronaut_bgr: np.ndarray) -> None:
    with Segmenter() as seg:
        seg.segment(astronaut_bgr)
    with pytest.raises(RuntimeError, match="closed"):
        seg.segment(astronaut_bgr)
    seg.close()  # twice is fine


def test_missing_model_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here.tflite"
    with pytest.raises(InputError, match="nothing-here.tflite"):
        Segmenter(path=missing)


def test_corrupt_model_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(model_path("landscape").read_bytes()[:1000])
    with pytest.raises(InputError, match="broken.tflite.*not a valid"):
        Segmenter(path=bad)


def test_creating_a_segmenter_prints_nothing(capfd, caplog) -> None:
    """MediaPipe's own INFO/WARNING lines go to the log (shown with -v), not onto the terminal."""
    caplog.set_level(logging.INFO, logger="realtime.segmentation")
    with Segmenter():
        pass
    assert capfd.readouterr().err == ""
    assert any("mediapipe: " in r.getMessage() for r in caplog.records)


def test_native_chatter_is_logged_and_the_rest_kept(capfd, caplog) -> None:
    caplog.set_level(logging.INFO, logger="realtime.segmentation")
    with _native_chatter_to_log():
        os.write(2, b"I0000 00:00:1.0 graph.cc:1] chatter\nE0000 00:00:1.0 model.cc:2] a real error\n")
    err = capfd.readouterr().err
    assert "a real error" in err and "chatter" not in err
    assert [r.getMessage() for r in caplog.records] == ["mediapipe: I0000 00:00:1.0 graph.cc:1] chatter"]
    caplog.clear()
    # when the block fails, its exception says what went wrong: every line goes to the log
    with pytest.raises(RuntimeError), _native_chatter_to_log():
        os.write(2, b"E0000 details of the failure\n")
        raise RuntimeError("failed")
    assert capfd.readouterr().err == "" and len(caplog.records) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": "portrait"}, "unknown"),
        ({"smoothing": 1.0}, r"\[0, 1\)"),
        ({"smoothing": -0.1}, r"\[0, 1\)"),
        ({"motion_scale": 0.0}, "motion scale"),
    ],
)
def test_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        Segmenter(**kwargs)


def test_bad_frame() -> None:
    with Segmenter() as seg:
        with pytest.raises(InputError, match="uint8"):
            seg.segment(np.zeros((48, 64, 3), np.float32))
        with pytest.raises(InputError, match=r"\(H, W, 3\)"):
            seg.segment(np.zeros((48, 64), np.uint8))


def test_downscale_area_matches_one_step_area(astronaut_bgr: np.ndarray) -> None:
    fast = downscale_area(astronaut_bgr, (256, 144)).astype(np.float32)
    slow = cv2.resize(astronaut_bgr, (256, 144), interpolation=cv2.INTER_AREA).astype(np.float32)
    assert fast.shape == slow.shape
    assert np.abs(fast - slow).mean() < 2.0
    assert downscale_area(astronaut_bgr, (640, 480)) is astronaut_bgr


def test_unclosed_segmenter_exits_cleanly() -> None:
    """A program that forgets close() must not end with MediaPipe's shutdown traceback."""
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from realtime.segmentation import Segmenter\n"
        "seg = Segmenter()\n"
        "seg.segment(np.zeros((48, 64, 3), np.uint8))\n"
        "print('done')\n"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "done"
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr


def test_benchmark_reports_json_ready_numbers() -> None:
    import json

    from realtime.benchmarks.segmentation import benchmark

    result = benchmark(frames=3, warmup=1)
    json.dumps(result)
    assert set(result["models"]) == {"landscape", "square"}
    landscape = result["models"]["landscape"]
    assert landscape["mask_hw"] == [144, 256]
    assert landscape["segment"]["median_ms"] > 0
    assert set(landscape["parts"]) == {"downscale_and_rgb", "inference", "smoothing"}
    assert landscape["speedup_vs_baseline"] > 0


def test_benchmark_bad_clip_names_the_file(tmp_path: Path) -> None:
    from realtime.benchmarks.segmentation import benchmark

    bad = tmp_path / "not-a-video.mp4"
    bad.write_text("hello")
    with pytest.raises(InputError, match="not-a-video.mp4"):
        benchmark(frames=1, warmup=0, clip=bad)
