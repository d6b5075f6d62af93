"""Offline rendering: a video or image in, its stylized version out (``stylecam render``)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import cv2

from .errors import InputError
from .pipeline import Pipeline, PipelineConfig
from .sources import IMAGE_EXTENSIONS, open_source

VIDEO_EXTENSIONS = {".mkv", ".mp4", ".mov", ".webm"}


@dataclass
class RenderResult:
    output: Path
    frames: int
    seconds: float
    interrupted: bool = False

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def check_output(path: Path, kinds: set[str]) -> None:
    """Fail before any work if ``path`` has the wrong extension or cannot be written."""
    if path.suffix.lower() not in kinds:
        raise InputError(f"-o {path}: expected a file ending in {', '.join(sorted(kinds))}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"-o {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"-o {path}: directory {parent} is not writable")
    if path.is_dir():
        raise InputError(f"-o {path}: is a directory, expected a file name")


def render(source: str, output: str | os.PathLike, config: PipelineConfig,
           size: tuple[int, int] | None = None, max_frames: int | None = None,
           on_frame: Callable[[int, int | None], None] | None = None) -> RenderResult:
    """Stylize every frame of ``source`` into ``output``.

    A still image renders to an image (``.png``/``.jpg``) or, given a video name, to a short
    clip of repeated frames is refused as ambiguous. Guided styles run their teacher on a keyframe
    every N frames, N matching the live cadence at the clip's frame rate (a still image is its own
    keyframe), so a render is deterministic. Ctrl-C (``KeyboardInterrupt``) stops
    early and the video written so far is finalized and plays.

    Args:
        source: video file, image file or camera index.
        output: ``.mkv`` (default container) / ``.mp4`` (fragmented) / ``.mov`` video, or an image.
        size: ``(w, h)`` to render at; default the source's size.
        on_frame: progress callback ``(frames_done, total_or_None)``.
    """
    out = Path(output)
    src_path = Path(str(source))
    is_image_in = src_path.suffix.lower() in IMAGE_EXTENSIONS
    if is_image_in:
        check_output(out, IMAGE_EXTENSIONS)
    else:
        check_output(out, VIDEO_EXTENSIONS)
    src = open_source(source, size=size, mode="all", loop=False, paced=False,
                      max_frames=1 if is_image_in else max_frames)
    pipe = None
    t0 = time.perf_counter()
    try:
        if config.guide != "off":  # guided styles: a keyframe every N frames, in this thread
            config = replace(config, guide="keyframes", guide_fps=float(src.fps or 30.0))
        pipe = Pipeline(config)
        total = src.info.get("frame_count")
        if max_frames and total:
            total = min(total, max_frames)
        if is_image_in:
            frame = src.read(timeout=10.0)
            if frame is None:
                raise InputError(f"{source}: no image could be read")
            res, _ = pipe.process(frame.image)
            tmp = out.with_name(out.stem + ".tmp" + out.suffix)
            if not cv2.imwrite(str(tmp), res):
                raise InputError(f"-o {out}: could not write the image")
            os.replace(tmp, out)
            return RenderResult(out, 1, time.perf_counter() - t0)
        return _render_video(src, pipe, out, total, on_frame, t0)
    finally:
        if pipe is not None:
            pipe.close()
        src.close()


def _render_video(src, pipe: Pipeline, out: Path, total, on_frame, t0: float) -> RenderResult:
    from .sinks import Recorder

    fps = src.fps or 30.0
    rec = Recorder(out, src.width, src.height, fps)
    n = 0
    interrupted = False
    try:
        for frame in src.frames():
            res, _ = pipe.process(frame.image)
            rec.write(res, frame.t_media)
            n += 1
            if on_frame:
                on_frame(n, total)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        rec.close()
    if n == 0:
        raise InputError(f"{src.name if hasattr(src, 'name') else 'input'}: no frames could be decoded")
    return RenderResult(out, n, time.perf_counter() - t0, interrupted)
