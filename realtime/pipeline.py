"""The live pipeline: one frame in, one composited frame out, with per-stage timings.

``Pipeline(config).process(frame) -> (out, FrameStats)``. Segmentation runs in its own
thread while the student stylizes, so the two overlap. No Qt here: the CLI, the app and
tests drive the same object. Not thread-safe: call it from one thread and change settings
between frames.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from .composite import PRESETS, Compositor, Treatment, masked_blur, smoothstep_alpha
from .errors import InputError
from .guide import Guides, GuideStatus
from .styles import StyleInfo, StyleRegistry
from .stylizer import Mix, Stylizer

log = logging.getLogger("stylecam")


@dataclass
class PipelineConfig:
    """Everything that shapes the output. Flags of the CLI map one to one onto these fields."""

    style: str | None = None  # None = the first available style
    styles_dirs: list[str] = field(default_factory=list)
    person: Treatment = field(default_factory=lambda: Treatment("style"))
    background: Treatment = field(default_factory=lambda: Treatment("style"))
    strength: float = 1.0
    backend: str = "auto"
    cpu_engine: str = "auto"
    internal_size: tuple[int, int] | None = None
    segmentation: bool = True
    seg_model: str = "landscape"
    mask_smoothing: float = 0.5
    threshold: float = 0.4
    feather: float = 0.15
    mirror: bool = False
    crossfade_ms: float = 300.0
    include_user_styles: bool = True
    include_shipped_styles: bool = True
    device_path: bool | None = None  # None: the fused-kernel path when the backend is cuda
    guide: str = "live"  # guided styles: live (background teacher) | keyframes (deterministic) | off
    guide_every_ms: float | None = None  # --guide-every; None: the style's cadence, adapted
    guide_fps: float = 30.0  # keyframes mode: the clip's frame rate
    on_guide_status: Callable[[GuideStatus], None] | None = None  # called from guide threads


@dataclass
class FrameStats:
    """Per-stage milliseconds of one frame (segmentation overlaps stylization)."""

    prepare_ms: float = 0.0
    segment_ms: float = 0.0
    stylize_ms: float = 0.0
    composite_ms: float = 0.0
    total_ms: float = 0.0
    t_capture: float | None = None
    t_done: float = 0.0
    style: str | None = None
    segmented: bool = False
    gpu_ms: dict[str, float] | None = None  # device path on CUDA: CUDA-event spans per stage (+ "total")

    def stages(self) -> dict[str, float]:
        return {"prepare": self.prepare_ms, "segment": self.segment_ms, "stylize": self.stylize_ms,
                "composite": self.composite_ms, "total": self.total_ms}


class Pipeline:
    """Segment, stylize and composite frames (see module docstring)."""

    def __init__(self, config: PipelineConfig | None = None, registry: StyleRegistry | None = None):
        self.config = cfg = config or PipelineConfig()
        if not 0.0 <= cfg.strength <= 1.0:
            raise InputError(f"--strength {cfg.strength}: expected a number from 0 to 1")
        if not 0.0 <= cfg.mask_smoothing < 1.0:
            raise InputError(f"--mask-smoothing {cfg.mask_smoothing}: expected a number in [0, 1)")
        self.registry = registry or StyleRegistry(cfg.styles_dirs, include_user=cfg.include_user_styles,
                                                  include_shipped=cfg.include_shipped_styles)
        for w in self.registry.warnings:
            log.warning("%s", w)
        self.stylizer = Stylizer(self.registry, cfg.backend, cfg.internal_size, cfg.cpu_engine, cfg.crossfade_ms)
        self.compositor = Compositor(cfg.threshold, cfg.feather)
        self.guides = Guides(self.registry, cfg.guide, cfg.guide_every_ms, cfg.guide_fps, cfg.on_guide_status)
        self.guides.stylizer = self.stylizer
        self.strength = cfg.strength
        self.mirror = cfg.mirror
        self.person, self.background = cfg.person, cfg.background
        self._segmenter = None
        self._seg_pool: ThreadPoolExecutor | None = None
        self.style: StyleInfo | None = None
        self.device_path = cfg.device_path if cfg.device_path is not None else self.backend == "cuda"
        self._image_cache: dict = {}
        if self.device_path and cfg.cpu_engine not in ("auto", "eager") and self.backend == "cpu":
            raise InputError("the device path needs --cpu-engine eager on the CPU")
        if self.device_path and self.backend == "cpu":
            self.stylizer.cpu_engine = "eager"
        if len(self.registry):
            self.set_style(cfg.style or self.registry.styles[0].key, crossfade=False)
        elif cfg.style:
            self.registry.find(cfg.style)  # raises a clear "no such style" error
        self._check_treatments(self.person, self.background)

    # ---- properties the UI shows -------------------------------------------------------------
    @property
    def backend(self) -> str:
        return self.stylizer.backend

    @property
    def backend_reason(self) -> str:
        return self.stylizer.backend_reason

    # ---- controls (call between frames) ----------------------------------------------------
    def set_style(self, name: str, crossfade: bool = True) -> StyleInfo:
        """Switch the main style (cross-fades over ``crossfade_ms``)."""
        s = self.registry.find(name)
        self.stylizer.set_mix({s.key: 1.0}, crossfade=crossfade)
        self.style = s
        return s

    def set_style_mix(self, mix: dict[str, float], crossfade: bool = True) -> None:
        """Blend several styles, e.g. ``{"candy": 0.7, "mosaic": 0.3}``."""
        keys = {self.registry.find(k).key: float(v) for k, v in mix.items()}
        self.stylizer.set_mix(keys, crossfade=crossfade)
        self.style = self.registry.find(max(keys, key=keys.get))

    def set_strength(self, strength: float) -> None:
        self.strength = float(min(1.0, max(0.0, strength)))

    def set_mirror(self, on: bool) -> None:
        self.mirror = bool(on)

    def set_regions(self, person: Treatment, background: Treatment) -> None:
        self._check_treatments(person, background)
        self.person, self.background = person, background

    def set_preset(self, name: str) -> None:
        if name not in PRESETS:
            raise InputError(f"--preset {name}: expected one of {', '.join(PRESETS)}")
        self.set_regions(*PRESETS[name])

    def _check_treatments(self, *ts: Treatment) -> None:
        for t in ts:
            if t.kind == "style" and not len(self.registry):
                raise InputError("no styles are installed: add a pack with --styles DIR, or use "
                                 "--person/--background original|blur|image|color")
            if t.kind == "style" and t.style and t.style != "@next":
                self.registry.find(t.style)

    # ---- the frame path --------------------------------------------------------------------
    def _mix_for(self, t: Treatment) -> Mix:
        if t.style is None:
            return self.stylizer.current_mix()
        if t.style == "@next":
            styles = self.registry.styles
            i = styles.index(self.style) if self.style in styles else 0
            return {styles[(i + 1) % len(styles)].key: 1.0}
        return {self.registry.find(t.style).key: 1.0}

    def _segmenter_get(self):
        if self._segmenter is None:
            from .segmentation import Segmenter

            self._segmenter = Segmenter(model=self.config.seg_model, smoothing=self.config.mask_smoothing)
            self._seg_pool = ThreadPoolExecutor(1, thread_name_prefix="segment")
        return self._segmenter

    def _segment(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        mask = self._segmenter.segment(frame)
        return mask, (time.perf_counter() - t0) * 1000

    def process(self, frame: np.ndarray, t_capture: float | None = None) -> tuple[np.ndarray, FrameStats]:
        """Stylize and composite one frame.

        Args:
            frame: ``(H, W, 3)`` uint8 BGR.
            t_capture: when the frame was captured (``time.perf_counter()``, as ``sources.Frame``), for latency.

        Returns:
            ``(H, W, 3)`` uint8 BGR output and its :class:`FrameStats`.
        """
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise InputError(f"frames must be (H, W, 3) uint8 BGR, got {frame.shape} {frame.dtype}")
        t0 = time.perf_counter()
        st = FrameStats(t_capture=t_capture, style=self.style.key if self.style else None)
        if self.mirror:
            frame = np.ascontiguousarray(frame[:, ::-1])
        person, background = self.person, self.background
        pmix = self._mix_for(person) if person.kind == "style" else None
        bmix = self._mix_for(background) if background.kind == "style" else None
        same = person.kind == background.kind and (
            pmix == bmix if person.kind == "style" else replace(person) == replace(background))
        need_mask = self.config.segmentation and not same
        self.guides.before_frame(frame, [*(pmix or {}), *(bmix or {})])

        seg: Future | None = None
        if need_mask:
            self._segmenter_get()
            seg = self._seg_pool.submit(self._segment, frame)
        if self.device_path:
            return self._process_device(frame, person, background, pmix, bmix, seg, st, t0)

        # Stylize while the mask is computed; one pass serves both regions when they share a mix.
        t1 = time.perf_counter()
        self.stylizer.prepare_ms = 0.0
        styled: dict[tuple, np.ndarray] = {}
        for mix in (pmix, bmix):
            if mix is not None:
                k = tuple(sorted(mix.items()))
                if k not in styled:
                    styled[k] = self.guides.stylize(self.stylizer, frame, mix)
        st.prepare_ms = self.stylizer.prepare_ms
        st.stylize_ms = (time.perf_counter() - t1) * 1000 - st.prepare_ms

        mask = None
        if seg is not None:
            mask, st.segment_ms = seg.result()
            st.segmented = True

        t2 = time.perf_counter()

        def render(t: Treatment, mix: Mix | None) -> np.ndarray:
            if mix is not None:
                return styled[tuple(sorted(mix.items()))]
            if t.kind == "blur":
                if mask is None:
                    weight = np.ones((2, 2), np.float32)
                else:  # exactly the pixels compositing treats as background feed the blur
                    weight = 1.0 - smoothstep_alpha(mask, (mask.shape[1], mask.shape[0]),
                                                    self.config.threshold, self.config.feather)
                return masked_blur(frame, weight.astype(np.float32), t.blur)
            return self.compositor.flat(t, frame)

        p_img = render(person, pmix)
        if need_mask:
            b_img = render(background, bmix)
            H, W = frame.shape[:2]
            alpha = smoothstep_alpha(mask, (W, H), self.config.threshold, self.config.feather)
        else:
            b_img, alpha = p_img, None
        out = self.compositor.blend(frame, p_img, b_img, alpha, self.strength)
        t3 = time.perf_counter()
        st.composite_ms = (t3 - t2) * 1000
        st.total_ms = (t3 - t0) * 1000
        st.t_done = time.perf_counter()
        return out, st

    def _process_device(self, frame: np.ndarray, person: Treatment, background: Treatment,
                        pmix: Mix | None, bmix: Mix | None, seg: Future | None, st: FrameStats,
                        t0: float) -> tuple[np.ndarray, FrameStats]:
        """The GPU path: upload once, stylize, then one fused compositing kernel, download once.

        Runs the same ops on CPU tensors (the kernels' references) when forced on a CPU backend,
        which is how it is tested without a GPU.
        """
        import torch

        from kernels import dispatch

        dev = torch.device("cuda") if self.backend == "cuda" else torch.device("cpu")
        dtype = torch.float16 if dev.type == "cuda" else torch.float32
        # CUDA events at the stage boundaries give GPU milliseconds per stage (for the statistics only).
        ev = [torch.cuda.Event(enable_timing=True) for _ in range(5)] if dev.type == "cuda" else []
        t1 = time.perf_counter()
        ft = torch.from_numpy(frame)
        if ev:
            ft = ft.pin_memory()
            ev[0].record()
            ft = ft.to(dev, non_blocking=True)
            ev[1].record()
        st.prepare_ms = (time.perf_counter() - t1) * 1000
        t1 = time.perf_counter()
        deltas: dict[tuple, torch.Tensor] = {}
        for mix in (pmix, bmix):
            if mix is not None:
                k = tuple(sorted(mix.items()))
                if k not in deltas and self.guides.device_map(mix, dev) is None:
                    deltas[k] = self.guides.delta_torch(self.stylizer, ft, mix)
        if dev.type == "cuda":
            ev[2].record()
            torch.cuda.current_stream().synchronize()
        st.stylize_ms = (time.perf_counter() - t1) * 1000
        mask_t = torch.ones(1, 1, device=dev)
        if seg is not None:
            mask, st.segment_ms = seg.result()
            st.segmented = True
            mask_t = torch.from_numpy(np.ascontiguousarray(mask, np.float32)).to(dev, non_blocking=True)
        t2 = time.perf_counter()
        if ev:
            ev[3].record()  # after the wait for the mask, which is CPU time
        H, W = frame.shape[:2]
        cfg = self.config

        def treat(t: Treatment, mix: Mix | None):
            if mix is not None:
                cmap = self.guides.device_map(mix, dev)  # a guided style alone: its map, fused
                return (cmap, "map") if cmap is not None else (deltas[tuple(sorted(mix.items()))], "delta")
            if t.kind == "original":
                return None, "image"
            if t.kind == "color":
                c = torch.tensor(t.color, dtype=dtype, device=dev).view(1, 3, 1, 1) / 255.0
                return c, "image"
            if t.kind == "blur":
                # A wide blur loses nothing at quarter resolution; compositing upsamples it.
                small = dispatch.prepare(ft, max(1, H // 4), max(1, W // 4), torch.float32)
                sigma = min(64.0, t.blur * (W / 640.0) / 4)
                return dispatch.masked_blur(small, mask_t, sigma, cfg.threshold, cfg.feather, dtype), "image"
            key = (t.image, W, H, dev.type)
            img = self._image_cache.get(key)
            if img is None:
                bgr = self.compositor.flat(t, frame)
                img = dispatch.prepare(torch.from_numpy(np.ascontiguousarray(bgr)).to(dev), H, W, dtype)
                self._image_cache = {key: img}
            return img, "image"

        fg, fg_mode = treat(person, pmix)
        if seg is None:
            bg, bg_mode = fg, fg_mode  # one region: alpha is 1 everywhere
        else:
            bg, bg_mode = treat(background, bmix)
        out_t = dispatch.composite(ft, mask_t, fg, bg, fg_mode, bg_mode, cfg.threshold, cfg.feather,
                                   self.strength)
        out = out_t.cpu().numpy() if dev.type == "cuda" else out_t.numpy()
        if ev:
            ev[4].record()
            ev[4].synchronize()
            st.gpu_ms = {"prepare": ev[0].elapsed_time(ev[1]), "stylize": ev[1].elapsed_time(ev[2]),
                         "composite": ev[3].elapsed_time(ev[4])}
            st.gpu_ms["total"] = sum(st.gpu_ms.values())
        t3 = time.perf_counter()
        st.composite_ms = (t3 - t2) * 1000
        st.total_ms = (t3 - t0) * 1000
        st.t_done = time.perf_counter()
        return out, st

    def guide_text(self) -> str | None:
        """What steers the current style, for the status bar and log (``None``: not a guided style)."""
        return self.guides.describe(self.style.key if self.style else None)

    def close(self) -> None:
        self.guides.close()
        self.stylizer.close()
        if self._seg_pool is not None:
            self._seg_pool.shutdown(wait=True)
            self._seg_pool = None
        if self._segmenter is not None:
            close = getattr(self._segmenter, "close", None)
            if close:
                close()
            self._segmenter = None

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
