"""Person segmentation: MediaPipe selfie segmentation on a small copy of the frame, smoothed over time.

The shipped models (``assets/models/``, Apache-2.0) each have one output category, ``selfie``: its
confidence mask is the probability that a pixel shows the person. `Segmenter.segment` returns that
mask at the model's own resolution (144x256 for ``landscape``, 256x256 for ``square``); the
compositor upsamples and feathers it to the frame, which is cheaper than doing it here twice.

Typical use, one frame at a time::

    with Segmenter("landscape", smoothing=0.5) as seg:
        mask = seg.segment(frame_bgr)      # (144, 256) float32 in [0, 1]

Threading: one `Segmenter` may be created in one thread and used from another (the pipeline runs it
in its own worker thread to overlap it with stylization). Calls on one instance are serialised by a
lock, so sharing an instance between threads is safe but gains nothing; give each thread its own
instance for parallelism. Every returned mask is a fresh array the caller owns.
"""

from __future__ import annotations

import concurrent.futures.thread  # noqa: F401  (loaded now so its exit hook precedes ours, see _close_all)
import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Literal

import cv2
import mediapipe as mp
import numpy as np
from mediapipe.tasks.python import BaseOptions, vision

from realtime.errors import InputError

ModelName = Literal["landscape", "square"]

MODELS_DIR = Path(__file__).resolve().parent.parent / "assets" / "models"
"""Where the shipped segmentation models live."""

MODEL_FILES: dict[str, str] = {
    "landscape": "selfie_segmentation_landscape.tflite",
    "square": "selfie_segmentation.tflite",
}
"""Model name -> file name in `MODELS_DIR`."""

MODEL_INPUT_SIZES: dict[str, tuple[int, int]] = {
    "landscape": (256, 144),
    "square": (256, 256),
}
"""Model name -> its input size as (width, height); the output mask has the same size."""

log = logging.getLogger(__name__)

DEFAULT_MOTION_SCALE = 0.5
"""Mask change (in probability) at and above which a pixel follows the new frame with no smoothing."""


def model_path(model: ModelName) -> Path:
    """Path of a shipped model by name.

    Args:
        model: ``"landscape"`` (256x144 input, for 4:3 and 16:9 cameras) or ``"square"`` (256x256).

    Returns:
        The ``.tflite`` path in `MODELS_DIR` (not checked for existence).

    Raises:
        InputError: ``model`` is not a known name.
    """
    if model not in MODEL_FILES:
        raise InputError(f"segmentation model {model!r} is unknown; expected one of {sorted(MODEL_FILES)}")
    return MODELS_DIR / MODEL_FILES[model]


def smooth_mask(
    prev: np.ndarray | None,
    raw: np.ndarray,
    strength: float,
    motion_scale: float | None = DEFAULT_MOTION_SCALE,
) -> np.ndarray:
    """Motion-aware exponential moving average of a probability mask.

    Each pixel keeps ``w`` of its previous smoothed value and takes ``1 - w`` of the new one, with
    ``w = strength * max(0, 1 - |raw - prev| / motion_scale)``. Small changes (sensor noise, edge
    flicker) are averaged with weight ``strength``; large changes (the person moved) pass through
    at once, so a moving person leaves no ghost. ``motion_scale=None`` gives a plain EMA with
    ``w = strength`` everywhere. Cost: a few numpy passes over a 256x144 array (~0.1 ms).

    Args:
        prev: The previous smoothed mask, or None for the first frame (then ``raw`` is returned).
        raw: The new mask from the model.
        strength: Smoothing strength in [0, 1); 0 returns ``raw`` unchanged.
        motion_scale: Change in probability above which a pixel is not smoothed, or None.

    Returns:
        The new smoothed mask, a fresh float32 array in [0, 1].

    Shape:
        - prev, raw: (h, w) float32
        - output: (h, w) float32
    """
    if prev is None or strength <= 0.0 or prev.shape != raw.shape:
        return np.array(raw, dtype=np.float32, copy=True)
    diff = raw - prev
    if motion_scale is None:
        keep: np.ndarray | float = strength
    else:
        # keep = strength * clip(1 - |diff| / scale, 0, 1), in place to stay cheap
        keep = np.abs(diff)
        keep *= -1.0 / motion_scale
        keep += 1.0
        np.clip(keep, 0.0, 1.0, out=keep)
        keep *= strength
    # prev + (1 - keep) * diff == keep * prev + (1 - keep) * raw
    out = diff * (1.0 - keep)
    out += prev
    return out.astype(np.float32, copy=False)


def downscale_area(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Shrink an image with area averaging, halving first while the factor is 2 or more.

    OpenCV's ``INTER_AREA`` has a fast path for exact integer factors; the general path is several
    times slower. Halving 640x480 to 320x240 and then area-resizing to 256x144 gives nearly the same
    result as one ``INTER_AREA`` call in half the time (0.7 ms instead of 1.4 ms on a 2-core CPU).

    Args:
        image: The image, any dtype OpenCV resizes.
        size: Target (width, height).

    Returns:
        The resized image (a new array; ``image`` itself when it already has ``size``).

    Shape:
        - image: (H, W, C) or (H, W)
        - output: (size[1], size[0], C) or (size[1], size[0])
    """
    tw, th = size
    h, w = image.shape[:2]
    while w >= 2 * tw and h >= 2 * th:
        w, h = w // 2, h // 2
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    if (w, h) == (tw, th):
        return image
    return cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA)


class Segmenter:
    """Person segmentation with the shipped MediaPipe selfie models (Tasks ``ImageSegmenter``, VIDEO mode).

    Args:
        model: ``"landscape"`` (256x144, default; fastest, suits 4:3 and 16:9 frames) or ``"square"``
            (256x256).
        smoothing: Temporal smoothing strength in [0, 1); 0 turns it off. See `smooth_mask`.
        motion_scale: Mask change above which smoothing is skipped for a pixel (avoids ghosting),
            in (0, 1], or None for a plain exponential moving average.
        path: Use this ``.tflite`` file instead of the shipped one; it must take the input size of
            ``model`` and output one confidence mask for the person.

    Raises:
        InputError: Unknown model name, bad smoothing value, or a model file that is missing,
            unreadable or not a segmentation model (the message names the file).
    """

    def __init__(
        self,
        model: ModelName = "landscape",
        smoothing: float = 0.5,
        motion_scale: float | None = DEFAULT_MOTION_SCALE,
        path: str | Path | None = None,
    ) -> None:
        file = Path(path) if path is not None else model_path(model)
        self.model = model
        self.model_file = file
        self.input_size: tuple[int, int] = MODEL_INPUT_SIZES[model]
        self.smoothing = smoothing  # validated by the setter
        if motion_scale is not None and not 0.0 < motion_scale <= 1.0:
            raise InputError(f"segmentation motion scale must be in (0, 1] or None, got {motion_scale!r}")
        self.motion_scale = motion_scale
        self._lock = threading.Lock()
        self._prev: np.ndarray | None = None
        self._last_ts = -1
        self._segmenter = _create_segmenter(file)
        # Close the graph when this object is collected or, at the latest, at interpreter exit
        # (before module teardown, where MediaPipe's own finaliser fails noisily).
        self._finalizer = weakref.finalize(self, _close_quietly, self._segmenter)
        _OPEN.add(self)

    @property
    def smoothing(self) -> float:
        """Temporal smoothing strength in [0, 1); may be changed between frames."""
        return self._smoothing

    @smoothing.setter
    def smoothing(self, value: float) -> None:
        if not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
            raise InputError(f"segmentation smoothing must be a number in [0, 1), got {value!r}")
        self._smoothing = float(value)

    @property
    def mask_size(self) -> tuple[int, int]:
        """Size of the returned mask as (height, width)."""
        w, h = self.input_size
        return h, w

    def segment(self, frame: np.ndarray, timestamp_ms: int | None = None, *, rgb: bool = False) -> np.ndarray:
        """Person probability for one frame, at the model's resolution, smoothed over time.

        Args:
            frame: The camera frame, uint8, BGR (or RGB with ``rgb=True``), any size.
            timestamp_ms: Capture time in milliseconds. MediaPipe needs strictly increasing
                timestamps; a missing, repeated or earlier one is replaced by the last one + 1, so
                callers may pass capture times as they come or nothing at all.
            rgb: The frame is RGB rather than BGR.

        Returns:
            A fresh float32 array in [0, 1]: 1 where the person is. Not upsampled.

        Raises:
            InputError: ``frame`` is not a uint8 (H, W, 3) array.
            RuntimeError: The segmenter was closed.

        Shape:
            - frame: (H, W, 3) uint8
            - output: (144, 256) for ``landscape``, (256, 256) for ``square``; see `mask_size`
        """
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
            raise InputError(f"segmentation input must be a uint8 (H, W, 3) image, got {got}")

        # Resize first, convert colour second: the conversion then touches 37k pixels, not 307k.
        small = downscale_area(frame, self.input_size)
        if not rgb:
            small = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(small))
        with self._lock:
            if self._segmenter is None:
                raise RuntimeError("segmenter is closed")
            ts = int(timestamp_ms) if timestamp_ms is not None else time.monotonic_ns() // 1_000_000
            ts = max(ts, self._last_ts + 1)
            self._last_ts = ts
            result = self._segmenter.segment_for_video(image, ts)
            # The only category of the selfie models is the person; copy out of MediaPipe's buffer.
            view = result.confidence_masks[0].numpy_view()
            raw = np.array(view, dtype=np.float32).reshape(view.shape[:2])
            np.clip(raw, 0.0, 1.0, out=raw)
            self._prev = smooth_mask(self._prev, raw, self._smoothing, self.motion_scale)
            return self._prev.copy()

    def reset(self) -> None:
        """Forget the smoothing history (call on a scene cut or camera switch)."""
        with self._lock:
            self._prev = None

    def close(self) -> None:
        """Release the MediaPipe graph. Safe to call twice."""
        with self._lock:
            if self._segmenter is not None:
                self._segmenter = None
                self._finalizer()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


_OPEN: weakref.WeakSet[Segmenter] = weakref.WeakSet()


def _close_all() -> None:
    """Close every segmenter still open, while MediaPipe's worker threads still accept work."""
    for seg in list(_OPEN):
        seg.close()


# MediaPipe runs each call on a concurrent.futures executor, which refuses work once the interpreter
# starts shutting down threads; plain atexit handlers run after that, so closing there fails with a
# traceback. threading's own exit hooks run earlier and in reverse order of registration, so this
# one (registered after the import of concurrent.futures.thread at the top) runs before the
# executors stop.
try:
    threading._register_atexit(_close_all)  # type: ignore[attr-defined]
except (AttributeError, RuntimeError):  # pragma: no cover - other Python implementations
    import atexit

    atexit.register(_close_all)


def _close_quietly(segmenter) -> None:  # segmenter: mediapipe ImageSegmenter
    """Close a MediaPipe segmenter, ignoring failures of a graph that is already shutting down."""
    try:
        segmenter.close()
    except Exception:
        pass


# What MediaPipe's C++ side prints on its own while it builds a graph: TFLite's "INFO: ..." lines,
# absl's "Logging before InitGoogle" notice, and absl INFO/WARNING lines ("I0000 ...", "W0000 ...").
_NATIVE_CHATTER = re.compile(r"^(INFO: |WARNING: Logging before InitGoogle|[IW]\d{4} )")


@contextlib.contextmanager
def _native_chatter_to_log():
    """Send what native code writes to file descriptor 2 meanwhile to this module's log (INFO).

    MediaPipe prints a few INFO and WARNING lines straight to the process's stderr each time a
    segmenter is created; users should not see them on every start (``-v`` shows them). Anything
    else written meanwhile (an error line, another thread's message) is written back to stderr,
    unless the block failed, in which case its exception already says what went wrong.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable stderr: nothing to tidy
        yield
        return
    failed = False
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode("utf-8", "replace").splitlines():
                if failed or _NATIVE_CHATTER.match(line):
                    log.info("mediapipe: %s", line)
                elif line.strip():
                    print(line, file=sys.stderr)


def _create_segmenter(file: Path):  # -> mediapipe ImageSegmenter
    """Load a ``.tflite`` file into a VIDEO-mode ImageSegmenter, turning every failure into InputError."""
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise InputError(f"segmentation model not found: {file}") from None
    except OSError as err:
        raise InputError(f"cannot read segmentation model {file}: {err.strerror or err}") from None
    options = vision.ImageSegmenterOptions(
        base_options=BaseOptions(model_asset_buffer=data),
        running_mode=vision.RunningMode.VIDEO,
        output_confidence_masks=True,
        output_category_mask=False,
    )
    try:
        with _native_chatter_to_log():
            segmenter = vision.ImageSegmenter.create_from_options(options)
    except Exception as err:  # MediaPipe raises RuntimeError/ValueError with multi-line C++ text
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"segmentation model {file} is not a valid TFLite segmentation model ({first})") from None
    return segmenter
