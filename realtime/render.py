"""Offline rendering: a video or image in, its stylized version out (``stylecam render``).

The output is written to a temporary file beside it and renamed into place only when finished, so an
existing file of that name is never left half-overwritten. A render that stops early (Ctrl-C, SIGTERM,
a recording error) still renames what it finalized into place; one that wrote no frame leaves nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import cv2

from .errors import DeviceError, InputError
from .pipeline import Pipeline, PipelineConfig
from .sinks import CONTAINERS
from .sources import IMAGE_EXTENSIONS, open_source

#: Video containers the recorder writes (the only ones worth suggesting).
VIDEO_EXTENSIONS = frozenset(CONTAINERS)

#: OpenCV estimates some containers' frame count from duration x rate, which can be one frame off.
_COUNT_SLACK = 1


@dataclass
class RenderResult:
    output: Path
    frames: int
    seconds: float
    interrupted: bool = False
    #: the signal that stopped the render early (``signal.SIGINT`` / ``signal.SIGTERM``), if any
    signal: int | None = None
    #: things the user should know although the render succeeded (e.g. a truncated input)
    warnings: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def check_output(path: Path, kinds: set[str] | frozenset[str]) -> None:
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


def check_not_input(source: str, out: Path) -> None:
    """Refuse an output that is the input file itself: the same path, a symlink to it or a hard link."""
    try:
        same = os.path.samefile(str(source), out)  # st_dev + st_ino, symlinks followed
    except (OSError, ValueError):  # either does not exist (a camera index, a new output name)
        same = False
    if same:
        raise InputError(f"-o {out}: is the input file {source} itself; writing it would destroy the input, "
                         f"choose another output name")


class _StopOnSignal:
    """SIGINT and SIGTERM during a render, handled so that what was rendered is kept.

    Before the first frame there is nothing to keep: the signal raises ``KeyboardInterrupt`` as usual.
    While frames are rendered, the first signal asks the loop to stop after the frame in progress (a
    second one raises ``KeyboardInterrupt``, for a source that no longer delivers). While the output is
    finalized, signals are only noted, so the file is never left unfinished. Does nothing outside the
    main thread, where Python cannot install signal handlers.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self.phase = "setup"  # setup -> frames -> finish
        self._old: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handler(self, signum: int, frame: object) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        if self.phase == "setup" or (self.phase == "frames" and not first):
            raise KeyboardInterrupt

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def render(source: str, output: str | os.PathLike, config: PipelineConfig,
           size: tuple[int, int] | None = None, max_frames: int | None = None,
           on_frame: Callable[[int, int | None], None] | None = None) -> RenderResult:
    """Stylize every frame of ``source`` into ``output``.

    A still image renders to an image (``.png``/``.jpg``); a still image to a video name is refused
    as ambiguous. SIGINT (Ctrl-C) or SIGTERM stops early: the video written so far is finalized,
    plays, and is renamed into place (``RenderResult.interrupted``). The output is refused when it is
    the input file (same path, symlink or hard link). Guided styles run their teacher on a keyframe
    every N frames, N matching the live cadence at the clip's frame rate (a still image is its own
    keyframe), so a render is deterministic.

    Args:
        source: video file, image file or camera index.
        output: ``.mkv`` (default container) / ``.mp4`` (fragmented) / ``.mov`` video, or an image.
        size: ``(w, h)`` to render at; default the source's size.
        on_frame: progress callback ``(frames_done, total_or_None)``.
    """
    out = Path(output)
    src_path = Path(str(source))
    is_image_in = src_path.suffix.lower() in IMAGE_EXTENSIONS
    check_output(out, IMAGE_EXTENSIONS if is_image_in else VIDEO_EXTENSIONS)
    check_not_input(str(source), out)
    final = Path(os.path.realpath(out))  # a symlinked output name is written through, as a shell would
    t0 = time.perf_counter()
    with _StopOnSignal() as stop:
        src = open_source(source, size=size, mode="all", loop=False, paced=False,
                          max_frames=1 if is_image_in else max_frames)
        pipe = None
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
                stop.phase = "finish"
                _write_image(res, out, final)
                return RenderResult(out, 1, time.perf_counter() - t0)
            return _render_video(src, pipe, out, final, total, on_frame, t0, stop)
        finally:
            stop.phase = "finish"
            if pipe is not None:
                pipe.close()
            src.close()


def _temp_beside(final: Path) -> Path:
    """An empty, visible file in ``final``'s folder with its extension (the writers pick formats by it)."""
    try:
        fd, name = tempfile.mkstemp(prefix=f"{final.stem}.partial-", suffix=final.suffix, dir=final.parent)
    except OSError as e:
        raise InputError(f"-o {final}: cannot create a file in {final.parent}: {e.strerror or e}") from None
    os.close(fd)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(name, 0o666 & ~mask)  # mkstemp makes it owner-only; the output gets the usual mode
    return Path(name)


def _write_image(res, out: Path, final: Path) -> None:
    tmp = _temp_beside(final)
    try:
        if not cv2.imwrite(str(tmp), res):
            raise InputError(f"-o {out}: could not write the image")
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _render_video(src, pipe: Pipeline, out: Path, final: Path, total, on_frame, t0: float,
                  stop: _StopOnSignal) -> RenderResult:
    from .sinks import Recorder

    fps = src.fps or 30.0
    tmp = _temp_beside(final)
    try:
        rec = Recorder(tmp, src.width, src.height, fps)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    n = 0
    interrupted = False
    stop.phase = "frames"
    try:
        try:
            while not stop.requested:
                frame = src.read(timeout=0.5)  # a timeout, so a stop request is seen even if the source stalls
                if frame is None:
                    if src.eof:
                        break
                    continue
                res, _ = pipe.process(frame.image)
                rec.write(res, frame.t_media)
                n += 1
                if on_frame:
                    on_frame(n, total)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            stop.phase = "finish"
            try:
                rec.close()
            finally:
                _keep_or_discard(tmp, final, rec.frames_written)
    except DeviceError as e:
        # The recorder names the file it writes, the temporary one; the user knows the output's name.
        raise DeviceError(str(e).replace(str(tmp), str(out))) from None
    interrupted = interrupted or stop.requested
    if n == 0:
        if interrupted:
            raise KeyboardInterrupt
        raise InputError(f"{getattr(src, 'name', 'input')}: no frames could be decoded")
    warnings = [] if interrupted else _shortfall(src, n, total)
    return RenderResult(out, n, time.perf_counter() - t0, interrupted, stop.signum, warnings)


def _keep_or_discard(tmp: Path, final: Path, frames_written: int) -> None:
    """Rename a finalized render with frames into place; remove an empty one."""
    try:
        keep = frames_written > 0 and tmp.stat().st_size > 0
    except FileNotFoundError:  # the recorder removed an empty file itself
        return
    if keep:
        os.replace(tmp, final)
    else:
        tmp.unlink()


def _shortfall(src, n: int, total: int | None) -> list[str]:
    """A warning when the input delivered fewer frames than it promised (truncated or damaged)."""
    name = getattr(src, "name", "input")
    if getattr(src, "error", None):
        return [f"{src.error}; rendered the {n} frame(s) before it"]
    if total and n < total - _COUNT_SLACK:
        return [f"{name} promised {total} frames but only {n} could be decoded (truncated or damaged?); "
                f"rendered those {n}"]
    return []
