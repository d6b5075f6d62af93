"""The demo clip: a webcam-like 640x480 video built from public-domain photos that ship with scikit-image.

A person (NASA's portrait of astronaut Eileen Collins, cut out with the shipped segmentation model)
stands in front of a second photo (SpaceX's public-domain launch photo of DSCOVR on Falcon 9). A
handheld camera drifts, zooms and shakes slightly, the person sways and leans, the background moves
less than the person (parallax), and every frame gets exposure flicker and sensor noise. Everything
is drawn from one seed, so a build is reproducible.

Build the shipped clip (needs the ``dev`` extra for scikit-image)::

    python -m realtime.demo --out assets/demo/demo.mp4

The live app and the tests only read `DEMO_CLIP`; building it is never needed at run time.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from realtime.errors import InputError, StylecamError

DEMO_CLIP = Path(__file__).resolve().parent.parent / "assets" / "demo" / "demo.mp4"
"""The shipped demo clip (H.264 in MP4, 640x480, 30 fps, `DEMO_FRAMES` frames)."""

DEMO_SIZE = (640, 480)
"""Frame size of the demo clip as (width, height)."""

DEMO_FPS = 30
"""Frame rate of the demo clip."""

DEMO_SECONDS = 7.0
"""Length of the shipped clip in seconds."""

DEMO_FRAMES = round(DEMO_SECONDS * DEMO_FPS)
"""Number of frames in the shipped clip."""

DEMO_SEED = 0
"""Seed of the shipped clip."""

DEFAULT_CRF = 21
"""x264 constant-rate factor of the shipped clip: the sensor grain survives and the file stays under 3 MB."""

# Where the person sits in the frame before any motion: scale of the 512x512 portrait and the
# position of its top-left corner. Its right and bottom edges (where the photo cuts through the
# helmet and the suit) stay outside the frame whatever the motion.
_PERSON_SCALE = 0.9
_PERSON_ORIGIN = (230.0, 50.0)
# The background photo is enlarged to this factor of the frame width so the camera can move over
# it; the rocket lands in the left third of the frame, beside the person.
_BACKGROUND_SCALE = 1.8
_BACKGROUND_CENTER = (0.68, 0.5)  # point of the photo (fractions of w, h) at the frame centre
_PARALLAX = 0.45  # the background moves this fraction of the camera's translation (it is farther)


@dataclass(frozen=True)
class DemoInfo:
    """What `build_demo` wrote."""

    path: Path
    frames: int
    fps: int
    width: int
    height: int
    bytes: int


def _smooth_walk(rng: np.random.Generator, t: np.ndarray, amplitude: float, fmin: float, fmax: float, k: int = 4) -> np.ndarray:
    """A smooth, bounded random walk: a sum of ``k`` sinusoids with random frequency and phase.

    The amplitude of each term falls with its frequency (like 1/f), so slow drift dominates and
    the result stays within about ``amplitude`` of zero.

    Shape:
        - t: (T,) seconds
        - output: (T,)
    """
    freqs = rng.uniform(fmin, fmax, k)
    phases = rng.uniform(0.0, 2.0 * math.pi, k)
    weights = 1.0 / freqs
    weights *= amplitude / weights.sum()
    return np.sum(weights[:, None] * np.sin(2.0 * math.pi * freqs[:, None] * t[None, :] + phases[:, None]), axis=0)


def _affine(scale: float, angle_deg: float, center: tuple[float, float], shift: tuple[float, float]) -> np.ndarray:
    """3x3 matrix: rotate by ``angle_deg`` and scale about ``center``, then translate by ``shift``."""
    m = np.eye(3)
    m[:2] = cv2.getRotationMatrix2D(center, angle_deg, scale)
    m[0, 2] += shift[0]
    m[1, 2] += shift[1]
    return m


@functools.lru_cache(maxsize=1)  # read-only; rebuilding it costs ~0.3 s
def _person_cutout() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut portrait (BGR float32 in [0, 1]) and its alpha matte.

    The matte comes from the shipped square segmentation model, upsampled and snapped to the photo's
    edges with a guided filter (hair and the suit's outline stay crisp instead of blurry).

    Shape:
        - output: (512, 512, 3) float32, (512, 512) float32
    """
    import skimage.data

    from realtime.segmentation import Segmenter

    rgb = skimage.data.astronaut()  # (512, 512, 3) uint8, NASA, public domain
    with Segmenter("square", smoothing=0.0) as seg:
        mask = seg.segment(rgb, timestamp_ms=0, rgb=True)
    h, w = rgb.shape[:2]
    alpha = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
    guide = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    alpha = cv2.ximgproc.guidedFilter(guide, alpha, 4, 1e-3)
    # Tighten the soft model edge (smoothstep 0.35..0.85) and pull it in by a pixel: otherwise the
    # studio wall and the flag behind her show as a pale rim over the new background.
    ramp = np.clip((alpha - 0.35) / 0.5, 0.0, 1.0)
    alpha = ramp * ramp * (3.0 - 2.0 * ramp)
    alpha = cv2.erode(alpha.astype(np.float32), np.ones((3, 3), np.uint8))
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.float32) / 255.0
    bgr.flags.writeable = alpha.flags.writeable = False  # shared through the cache
    return bgr, alpha


@functools.lru_cache(maxsize=1)
def _background() -> np.ndarray:
    """The launch photo, enlarged and softened like an out-of-focus backdrop (BGR float32 in [0, 1]).

    Shape:
        - output: (H, W, 3) float32 with W = `_BACKGROUND_SCALE` * 640
    """
    import skimage.data

    rgb = skimage.data.rocket()  # (427, 640, 3) uint8, SpaceX, public domain
    width = round(_BACKGROUND_SCALE * DEMO_SIZE[0])
    height = round(width * rgb.shape[0] / rgb.shape[1])
    big = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_CUBIC)
    big = cv2.GaussianBlur(big, (0, 0), 2.0)  # depth of field: the backdrop is metres behind
    out = cv2.cvtColor(big, cv2.COLOR_RGB2BGR).astype(np.float32) / 255.0
    out.flags.writeable = False  # shared through the cache
    return out


def render_frames(seconds: float = DEMO_SECONDS, fps: int = DEMO_FPS, seed: int = DEMO_SEED) -> Iterator[np.ndarray]:
    """Render the demo frames.

    Args:
        seconds: Length of the clip.
        fps: Frames per second.
        seed: Seed of every random choice (motion paths, flicker, noise).

    Yields:
        Frames as uint8 BGR, the way a camera delivers them.

    Raises:
        InputError: ``seconds`` or ``fps`` is not positive.

    Shape:
        - output: (480, 640, 3) uint8 per frame
    """
    if not seconds > 0 or fps <= 0:
        raise InputError(f"demo length must be positive, got seconds={seconds!r} fps={fps!r}")
    n = max(1, round(seconds * fps))
    fw, fh = DEMO_SIZE
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fps

    # Motion paths, all drawn up front so the noise stream below cannot change them.
    cam_x = _smooth_walk(rng, t, 14.0, 0.05, 0.4) + _smooth_walk(rng, t, 0.8, 3.0, 8.0)  # drift + hand shake
    cam_y = _smooth_walk(rng, t, 9.0, 0.05, 0.4) + _smooth_walk(rng, t, 0.8, 3.0, 8.0)
    cam_zoom = 1.03 + _smooth_walk(rng, t, 0.03, 0.04, 0.15)
    cam_rot = _smooth_walk(rng, t, 0.8, 0.05, 0.5)
    sway_x = _smooth_walk(rng, t, 20.0, 0.1, 0.5)  # the person moves in front of the backdrop
    sway_y = _smooth_walk(rng, t, 5.0, 0.1, 0.6)
    lean = _smooth_walk(rng, t, 2.5, 0.1, 0.5)  # degrees, about the bottom of the torso
    nearer = 1.0 + _smooth_walk(rng, t, 0.03, 0.05, 0.3)  # leaning toward the camera
    exposure = 1.0 + _smooth_walk(rng, t, 0.04, 0.1, 0.6)  # auto-exposure hunting

    person, alpha = _person_cutout()
    rgba = np.dstack([person * alpha[..., None], alpha])  # premultiplied, so edges blend cleanly
    background = _background()
    bh, bw = background.shape[:2]

    # Static placement of each layer in frame coordinates.
    bg_place = np.array(
        [[1.0, 0.0, fw / 2 - _BACKGROUND_CENTER[0] * bw], [0.0, 1.0, fh / 2 - _BACKGROUND_CENTER[1] * bh], [0, 0, 1]]
    )
    s = _PERSON_SCALE
    person_place = np.array([[s, 0.0, _PERSON_ORIGIN[0]], [0.0, s, _PERSON_ORIGIN[1]], [0, 0, 1]])
    pivot = (_PERSON_ORIGIN[0] + 0.45 * 512 * s, _PERSON_ORIGIN[1] + 512 * s)  # bottom of the torso
    centre = (fw / 2, fh / 2)

    yy, xx = np.mgrid[0:fh, 0:fw].astype(np.float32)
    r2 = ((xx - centre[0]) / fw) ** 2 + ((yy - centre[1]) / fh) ** 2
    vignette = (1.0 - 0.35 * r2)[..., None]  # cheap lens falloff, ~-15 % in the corners

    for i in range(n):
        camera = _affine(cam_zoom[i], cam_rot[i], centre, (cam_x[i], cam_y[i]))
        camera_far = _affine(cam_zoom[i] ** _PARALLAX, cam_rot[i], centre, (_PARALLAX * cam_x[i], _PARALLAX * cam_y[i]))
        body = _affine(nearer[i], lean[i], pivot, (sway_x[i], sway_y[i]))
        bg = cv2.warpAffine(background, (camera_far @ bg_place)[:2], DEMO_SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        fg = cv2.warpAffine(rgba, (camera @ body @ person_place)[:2], DEMO_SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        frame = bg * (1.0 - fg[..., 3:4]) + fg[..., :3]
        frame *= vignette
        frame *= exposure[i] * (1.0 + 0.006 * rng.standard_normal())  # slow hunting + per-frame flicker

        # Sensor noise in 8-bit units: read noise plus shot noise growing with the signal, drawn per
        # channel so it shows as colour speckle the way a small webcam sensor does.
        frame *= 255.0
        np.clip(frame, 0.0, 255.0, out=frame)
        sigma = np.sqrt(3.0**2 + 0.08 * frame)
        frame += sigma * rng.standard_normal(frame.shape, dtype=np.float32)
        yield np.clip(frame + 0.5, 0, 255).astype(np.uint8)


def build_demo(
    out: str | Path = DEMO_CLIP,
    seconds: float = DEMO_SECONDS,
    fps: int = DEMO_FPS,
    seed: int = DEMO_SEED,
    crf: int = DEFAULT_CRF,
) -> DemoInfo:
    """Render the demo and encode it as H.264 (yuv420p) in MP4.

    Encoding runs with one x264 thread so the same arguments give the same bytes.

    Args:
        out: Output ``.mp4`` path; its folder is created.
        seconds: Length of the clip.
        fps: Frames per second.
        seed: Seed of the motion and the noise.
        crf: x264 quality, 0 (lossless) to 51; lower is better and bigger.

    Returns:
        What was written.

    Raises:
        InputError: Bad length, rate or quality, or the output cannot be written.
    """
    import av

    if not 0 <= crf <= 51:
        raise InputError(f"--crf must be in 0..51, got {crf}")
    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise InputError(f"demo output must be an .mp4 file, got {out}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        container = av.open(str(out), mode="w", format="mp4", options={"movflags": "+faststart"})
    except (OSError, av.error.FFmpegError) as err:
        raise InputError(f"cannot write demo clip {out}: {getattr(err, 'strerror', None) or err}") from None
    frames = 0
    try:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = DEMO_SIZE
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        # tune=grain keeps the sensor noise instead of smoothing it away: the clip should look
        # like a camera, and noise is what tests a stylizer's temporal stability.
        stream.options = {"crf": str(crf), "preset": "slow", "tune": "grain", "threads": "1"}
        for frame in render_frames(seconds, fps, seed):
            video = av.VideoFrame.from_ndarray(frame, format="bgr24")
            video.pts = frames
            container.mux(stream.encode(video))
            frames += 1
        container.mux(stream.encode())
    finally:
        container.close()
    return DemoInfo(out, frames, fps, DEMO_SIZE[0], DEMO_SIZE[1], out.stat().st_size)


def main(argv: list[str] | None = None) -> int:
    """``python -m realtime.demo``: build the demo clip."""
    parser = argparse.ArgumentParser(prog="python -m realtime.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEMO_CLIP, help="output .mp4 (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=DEMO_SECONDS, help="length (default: %(default)s)")
    parser.add_argument("--fps", type=int, default=DEMO_FPS, help="frame rate (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=DEMO_SEED, help="seed of motion and noise (default: %(default)s)")
    parser.add_argument("--crf", type=int, default=DEFAULT_CRF, help="x264 quality, lower is better (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        info = build_demo(args.out, args.seconds, args.fps, args.seed, args.crf)
    except StylecamError as err:
        print(f"stylecam: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {info.path}: {info.frames} frames, {info.width}x{info.height} @ {info.fps} fps, {info.bytes / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
