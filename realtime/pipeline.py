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

from .composite import PRESETS, Compositor, Layer, Treatment, masked_blur_small, smoothstep_alpha
from .errors import InputError
from .guide import Guides, GuideStatus
from .styles import StyleInfo, StyleRegistry
from .stylizer import Mix, Stylizer, native_bf16

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
    # With two styles a frame (``split``), the background's style runs in bfloat16 (``bf16``) or fp32
    # (``fp32``); ``auto``: bf16 on CPUs that compute it natively (fidelity in ARCHITECTURE.md), else fp32.
    split_precision: str = "auto"


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
        if cfg.split_precision not in ("auto", "fp32", "bf16"):
            raise InputError(f"--split-precision {cfg.split_precision}: expected auto, fp32 or bf16")
        self.split_precision = cfg.split_precision
        if self.split_precision == "auto":
            # bfloat16 is a torch.compile engine: only where the engine is ours to choose (--cpu-engine
            # auto), so an explicit engine is what runs, and no compile ever runs on the frame thread.
            self.split_precision = "bf16" if (self.backend == "cpu" and not self.device_path and native_bf16()
                                              and cfg.cpu_engine == "auto") else "fp32"
        if self.split_precision == "bf16" and (self.backend != "cpu" or self.device_path):
            raise InputError("--split-precision bf16 runs on the CPU backend only")
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

        One frame path for both backends: the host path (numpy/OpenCV compositing) and the device
        path (torch tensors through ``kernels.dispatch``; CPU tensors run the kernels' references)
        differ only in how a frame is uploaded, stylized and composited (:meth:`_upload`,
        :meth:`_delta`, :meth:`_layer`, :meth:`_composite`).

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
        pmix, bmix, need_mask = self._plan_regions(person, background)
        self.guides.before_frame(frame, [*(pmix or {}), *(bmix or {})])

        seg: Future | None = None
        if need_mask:
            self._segmenter_get()
            seg = self._seg_pool.submit(self._segment, frame)

        # Stylize while the mask is computed; one pass serves both regions when they share a mix.
        # With two styles (split) the background's pass may run in bfloat16 (split_precision).
        t1 = time.perf_counter()
        self.stylizer.prepare_ms = 0.0
        # On CUDA, events at the stage boundaries give GPU milliseconds per stage (statistics only).
        ev = self._cuda_events()
        ft = self._upload(frame, ev)
        st.prepare_ms = (time.perf_counter() - t1) * 1000
        t1 = time.perf_counter()
        deltas = self._stylize_passes(ft, pmix, bmix, need_mask)
        if ev:
            import torch

            ev[2].record()
            torch.cuda.current_stream().synchronize()
        st.prepare_ms += self.stylizer.prepare_ms
        st.stylize_ms = (time.perf_counter() - t1) * 1000 - self.stylizer.prepare_ms

        mask = None
        if seg is not None:
            mask, st.segment_ms = seg.result()
            st.segmented = True

        t2 = time.perf_counter()
        if ev:
            ev[3].record()  # after the wait for the mask, which is CPU time
        fg = self._layer(person, pmix, deltas, frame, ft, mask)
        bg = self._layer(background, bmix, deltas, frame, ft, mask) if mask is not None else fg
        out = self._composite(frame, ft, mask, fg, bg)
        if ev:
            ev[4].record()
            ev[4].synchronize()
            st.gpu_ms = _gpu_stage_ms(ev)
        t3 = time.perf_counter()
        st.composite_ms = (t3 - t2) * 1000
        st.total_ms = (t3 - t0) * 1000
        st.t_done = time.perf_counter()
        return out, st

    def _plan_regions(self, person: Treatment, background: Treatment) -> tuple[dict | None, dict | None, bool]:
        """The style mix of each region (None: not stylized) and whether a person mask is needed."""
        pmix = self._mix_for(person) if person.kind == "style" else None
        bmix = self._mix_for(background) if background.kind == "style" else None
        same = person.kind == background.kind and (
            pmix == bmix if person.kind == "style" else replace(person) == replace(background))
        return pmix, bmix, self.config.segmentation and not same

    def _stylize_passes(self, ft, pmix: dict | None, bmix: dict | None, need_mask: bool) -> dict[tuple, object]:
        """One stylizer pass per distinct mix, keyed by the sorted mix.

        With two styles (split) the background's pass runs at ``split_precision``.
        """
        deltas: dict[tuple, object] = {}
        inputs: dict = {}  # the frame prepared at an internal size, shared by both passes of a split
        two_styles = pmix is not None and bmix is not None and pmix != bmix and need_mask
        for mix, precision in ((pmix, "fp32"), (bmix if need_mask else None,
                                                self.split_precision if two_styles else "fp32")):
            if mix is not None:
                k = tuple(sorted(mix.items()))
                if k not in deltas:
                    deltas[k] = self._delta(ft, mix, precision, inputs)
        return deltas

    # ---- the two backends of the frame path ------------------------------------------------
    def _cuda_events(self) -> list:
        if not (self.device_path and self.backend == "cuda"):
            return []
        import torch

        return [torch.cuda.Event(enable_timing=True) for _ in range(5)]

    def _upload(self, frame: np.ndarray, ev: list):
        """The frame as the compositor takes it: the array itself, or a tensor on the device path."""
        if not self.device_path:
            return frame
        import torch

        ft = torch.from_numpy(frame)
        if self.backend != "cuda":
            return ft
        ft = ft.pin_memory()
        ev[0].record()
        ft = ft.to("cuda", non_blocking=True)
        ev[1].record()
        return ft

    def _delta(self, ft, mix: Mix, precision: str, inputs: dict):
        """A mix's change. On the host path guided styles (their colour maps) and LUT students make a
        finished full-resolution image instead; on the device path a guided style alone needs no pass
        (the compositing kernel applies its map)."""
        if self.device_path:
            cmap = self.guides.device_map(mix, ft.device)  # a guided style alone: its map, fused into the kernel
            return (cmap, "map") if cmap is not None else self.guides.delta_torch(self.stylizer, ft, mix)
        if self.guides.split(mix)[1] or self.stylizer.paints_full_frame(mix):
            return Layer("image", self.guides.stylize(self.stylizer, ft, mix))
        return self.stylizer.delta(ft, mix, precision, inputs)

    def _layer(self, t: Treatment, mix: Mix | None, deltas: dict, frame: np.ndarray, ft, mask):
        """One region's treatment as a compositing layer (host :class:`Layer`, or ``(tensor, mode)``)."""
        cfg = self.config
        H, W = frame.shape[:2]
        if not self.device_path:
            if mix is not None:
                d = deltas[tuple(sorted(mix.items()))]
                return d if isinstance(d, Layer) else Layer("delta", d)
            if t.kind == "original":
                return Layer("original")
            if t.kind == "blur":
                if mask is None:
                    weight = np.ones((2, 2), np.float32)
                else:  # exactly the pixels compositing treats as background feed the blur
                    weight = 1.0 - smoothstep_alpha(mask, (mask.shape[1], mask.shape[0]), cfg.threshold, cfg.feather)
                return Layer("image", masked_blur_small(frame, weight, t.blur))
            return Layer("image", self.compositor.flat(t, frame))

        import torch

        from kernels import dispatch

        dev, dtype = ft.device, (torch.float16 if ft.is_cuda else torch.float32)
        if mix is not None:
            d = deltas[tuple(sorted(mix.items()))]
            return d if isinstance(d, tuple) else (d, "delta")
        if t.kind == "original":
            return None, "image"
        if t.kind == "color":
            return torch.tensor(t.color, dtype=dtype, device=dev).view(1, 3, 1, 1) / 255.0, "image"
        if t.kind == "blur":
            # A wide blur loses nothing at quarter resolution; compositing upsamples it.
            small = dispatch.prepare(ft, max(1, H // 4), max(1, W // 4), torch.float32)
            sigma = min(64.0, t.blur * (W / 640.0) / 4)
            return dispatch.masked_blur(small, self._mask_tensor(mask, dev), sigma, cfg.threshold, cfg.feather,
                                        dtype), "image"
        key = (t.image, W, H, dev.type)
        img = self._image_cache.get(key)
        if img is None:
            bgr = self.compositor.flat(t, frame)
            img = dispatch.prepare(torch.from_numpy(np.ascontiguousarray(bgr)).to(dev), H, W, dtype)
            self._image_cache = {key: img}
        return img, "image"

    @staticmethod
    def _mask_tensor(mask: np.ndarray | None, dev):
        import torch

        if mask is None:
            return torch.ones(1, 1, device=dev)
        return torch.from_numpy(np.ascontiguousarray(mask, np.float32)).to(dev, non_blocking=True)

    def _composite(self, frame: np.ndarray, ft, mask: np.ndarray | None, fg, bg) -> np.ndarray:
        if not self.device_path:
            return self.compositor.composite(frame, mask, fg, bg, self.strength)
        from kernels import dispatch

        # Without a mask both regions are the same: alpha is 1 everywhere.
        out_t = dispatch.composite(ft, self._mask_tensor(mask, ft.device), fg[0], bg[0], fg[1], bg[1],
                                   self.config.threshold, self.config.feather, self.strength)
        return out_t.cpu().numpy() if ft.is_cuda else out_t.numpy()

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


def _gpu_stage_ms(ev: list) -> dict[str, float]:
    """GPU milliseconds per stage from the five CUDA events of a frame (recorded and synchronized)."""
    gpu_ms = {"prepare": ev[0].elapsed_time(ev[1]), "stylize": ev[1].elapsed_time(ev[2]),
              "composite": ev[3].elapsed_time(ev[4])}
    gpu_ms["total"] = sum(gpu_ms.values())
    return gpu_ms
