"""Run students on a backend: ``cpu`` (eager / torch.compile / ONNX Runtime, fastest measured) or ``cuda``.

The stylizer works at an internal resolution and returns the *change* a style makes,
upsampled and added to the full-resolution frame, so detail survives a small internal size.
Style changes cross-fade by blending CIN rows (one pass inside a pack) or outputs (across packs).
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import sys
import logging
import os
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np
import torch

from kernels.provenance import cpu_model

from .errors import DeviceError, InputError
from .student import StudentNet
from .styles import StylePack, StyleRegistry

log = logging.getLogger("stylecam")

CPU_ENGINES = ("eager", "compile", "onnxruntime")


class Engine(Protocol):
    name: str

    def __call__(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        """``x [1,3,h,w]`` float32 RGB in [0,1], ``w [1,S]`` float32 → ``[1,3,h,w]`` float32."""


def cpu_threads() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


class EagerEngine:
    """PyTorch eager on CPU, channels_last, inference mode."""

    name = "eager"

    def __init__(self, net: StudentNet):
        self.net = net.eval().to(memory_format=torch.channels_last)

    def __call__(self, x, w):
        with torch.inference_mode():
            xt = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
            return self.net(xt, torch.from_numpy(w)).contiguous().numpy()


class CompileEngine(EagerEngine):
    """``torch.compile`` (inductor, C++ codegen) on CPU; the first call compiles."""

    name = "compile"

    def __init__(self, net: StudentNet):
        super().__init__(net)
        self.fn = torch.compile(self.net, dynamic=False)

    def __call__(self, x, w):
        with torch.inference_mode():
            xt = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
            return self.fn(xt, torch.from_numpy(w)).contiguous().numpy()


class CompileBf16Engine:
    """``torch.compile`` of the student in bfloat16 (fp32 in and out); the first call compiles.

    On CPUs with native bfloat16 arithmetic (AVX-512 BF16, AMX) it runs the student in about half
    the time of fp32; its output stays within 1 % of the fp32 change (see ARCHITECTURE.md), so the
    pipeline uses it for a split's second style, never silently for the main one.
    """

    name = "compile-bf16"

    def __init__(self, net: StudentNet):
        self.net = net.eval().to(torch.bfloat16).to(memory_format=torch.channels_last)
        self.fn = torch.compile(self.net, dynamic=False)

    def __call__(self, x, w):
        with torch.inference_mode():
            xt = torch.from_numpy(x).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
            return self.fn(xt, torch.from_numpy(w).to(torch.bfloat16)).float().contiguous().numpy()


def native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX-512 BF16 or AMX); elsewhere bf16 is emulated, slow."""
    try:
        flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def export_onnx_bytes(net: StudentNet, h: int, w: int) -> bytes:
    """The student as an ONNX graph with inputs ``image [1,3,h,w]`` and ``style_weights [1,S]``."""
    buf = io.BytesIO()
    x = torch.zeros(1, 3, h, w)
    s = torch.zeros(1, net.num_styles)
    s[0, 0] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (x, s), buf, input_names=["image", "style_weights"],
                          output_names=["stylized"], opset_version=17, dynamo=False)
    return buf.getvalue()


class OrtEngine:
    """ONNX Runtime (CPU execution provider) on a graph exported for one input size."""

    name = "onnxruntime"

    def __init__(self, net: StudentNet, h: int, w: int):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = cpu_threads()
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        # Spinning intra-op threads would steal the cores segmentation and capture need between runs.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.sess = ort.InferenceSession(export_onnx_bytes(net, h, w), so, providers=["CPUExecutionProvider"])
        self.hw = (h, w)

    def __call__(self, x, w):
        return self.sess.run(None, {"image": x, "style_weights": w})[0]


def make_cpu_engine(kind: str, net: StudentNet, h: int, w: int) -> Engine:
    if kind == "eager":
        return EagerEngine(net)
    if kind == "compile":
        return CompileEngine(net)
    if kind == "onnxruntime":
        return OrtEngine(net, h, w)
    raise InputError(f"--cpu-engine {kind}: expected one of auto, {', '.join(CPU_ENGINES)}")


def time_engine(engine: Engine, x: np.ndarray, w: np.ndarray, runs: int = 7, warmup: int = 2) -> float:
    """Median milliseconds per call after warm-up."""
    for _ in range(warmup):
        engine(x, w)
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        engine(x, w)
        ts.append((time.perf_counter() - t0) * 1000)
    return float(np.median(ts))


def _engine_cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "stylecam" / "cpu_engines.json"


def engine_cache_key(net: StudentNet, h: int, w: int) -> str:
    import onnxruntime

    a = net.config()
    return (f"{a['arch']}-w{a['width']}-s{a['num_styles']}-{w}x{h}|torch {torch.__version__}|"
            f"ort {onnxruntime.__version__}|{cpu_model()}|{cpu_threads()} threads")


def load_engine_choice(key: str) -> dict | None:
    try:
        return json.loads(_engine_cache_path().read_text()).get(key)
    except (OSError, ValueError):
        return None


def save_engine_choice(key: str, result: dict) -> None:
    p = _engine_cache_path()
    try:
        data = json.loads(p.read_text()) if p.exists() else {}
    except (OSError, ValueError):
        data = {}
    data[key] = result
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, p)
    except OSError:
        pass  # a read-only home only costs a re-measure next time


def compare_cpu_engines(net: StudentNet, h: int, w: int, kinds=CPU_ENGINES, runs: int = 7) -> dict:
    """Time each CPU engine on this student and size; ``{"<kind>_ms": median, ..., "chosen": kind}``."""
    x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    sw = np.zeros((1, net.num_styles), np.float32)
    sw[0, 0] = 1
    result: dict = {"size": [w, h]}
    ref = None
    for kind in kinds:
        try:
            t0 = time.perf_counter()
            eng = make_cpu_engine(kind, net, h, w)
            y = eng(x, sw)  # first call also compiles
            result[f"{kind}_setup_s"] = round(time.perf_counter() - t0, 3)
            if ref is None:
                ref = y
            elif float(np.abs(y - ref).max()) > 1e-3:
                result[f"{kind}_error"] = f"output differs from eager by {float(np.abs(y - ref).max()):.2e}"
                continue
            result[f"{kind}_ms"] = round(time_engine(eng, x, sw, runs=runs), 3)
        except Exception as e:  # an engine that fails here is simply not chosen
            result[f"{kind}_error"] = f"{type(e).__name__}: {e}"[:200]
    timed = {k: result[f"{k}_ms"] for k in kinds if f"{k}_ms" in result}
    result["chosen"] = min(timed, key=timed.get) if timed else "eager"
    return result


@dataclass
class BackendChoice:
    name: str  # "cpu" | "cuda"
    reason: str


def choose_backend(requested: str = "auto") -> BackendChoice:
    """Pick ``cpu`` or ``cuda`` and say why (for the log line and the status bar)."""
    if requested not in ("auto", "cpu", "cuda"):
        raise InputError(f"--backend {requested}: expected auto, cpu or cuda")
    if requested == "cpu":
        return BackendChoice("cpu", "cpu requested with --backend cpu")
    cuda_ok, why = False, ""
    if torch.version.cuda is None:
        why = "this torch build has no CUDA support"
    elif not torch.cuda.is_available():
        why = "no CUDA device found"
    else:
        try:
            torch.zeros(1, device="cuda").add_(1)
            cuda_ok = True
        except Exception as e:  # a broken driver must not take the app down
            why = f"CUDA failed to start ({type(e).__name__}: {e})"
    if cuda_ok:
        return BackendChoice("cuda", f"cuda on {torch.cuda.get_device_name(0)}")
    if requested == "cuda":
        raise DeviceError(f"--backend cuda: {why}; use --backend cpu or auto")
    return BackendChoice("cpu", f"cpu because {why}")


class CudaEngine:
    """fp16 channels_last student on the GPU (fused norm kernels when ``kernels`` provides them)."""

    name = "cuda-fp16"

    def __init__(self, net: StudentNet):
        from kernels.dispatch import student_norm_impl

        from .student import set_norm_impl

        impl = student_norm_impl()
        if impl is not None:
            set_norm_impl(impl)  # dispatches per call: the reference still serves CPU tensors
        self.net = net.eval().half().cuda().to(memory_format=torch.channels_last)

    def __call__(self, x, w):
        with torch.inference_mode():
            xt = torch.from_numpy(x).pin_memory().cuda(non_blocking=True).half()
            xt = xt.contiguous(memory_format=torch.channels_last)
            y = self.net(xt, torch.from_numpy(w).cuda().half())
            return y.float().cpu().numpy()


_compiling = 0
_compiling_lock = threading.Lock()
_switch_interval = sys.getswitchinterval()


@contextlib.contextmanager
def background_compile():
    """Keep frames flowing while ``torch.compile`` runs in another thread of this process.

    Compiling is Python code that holds the GIL; each time the frame thread leaves native code it
    waits for the GIL up to the switch interval (5 ms by default), dozens of times a frame. While a
    compile runs the interval is 0.5 ms. ``gc.freeze()`` moves the objects alive now (modules, networks)
    out of the collector's way, so the full collections the compiler's garbage triggers, which held
    the GIL for 100-230 ms here, scan only new objects.
    """
    global _compiling, _switch_interval
    with _compiling_lock:
        if _compiling == 0:
            _switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch_interval, 0.0005))
            gc.freeze()
        _compiling += 1
    try:
        yield
    finally:
        with _compiling_lock:
            _compiling -= 1
            if _compiling == 0:
                sys.setswitchinterval(_switch_interval)


class PackRunner:
    """One pack's student on the chosen backend, at one internal size."""

    def __init__(self, pack: StylePack, backend: str, h: int, w: int, cpu_engine: str = "auto",
                 quick: Engine | None = None):
        self.pack = pack
        net = pack.build()
        self.size = (w, h)
        self.comparison: dict | None = None
        if quick is not None:
            # bfloat16 (a split's background, CPU): ``quick`` (the fp32 engine of the same pack and size)
            # serves until the bf16 student has compiled; with an explicit --cpu-engine the first call
            # compiles, so a benchmark's warm-up frame covers it.
            self.engine = quick
            self.engine_reason = f"{quick.name} while bfloat16 is compiled and timed"
            if cpu_engine != "auto":
                self._compile_bf16(pack, h, w)
                return
            cached = load_engine_choice(engine_cache_key(net, h, w) + "|split-bf16")
            if cached is not None and cached.get("chosen") != "compile-bf16":
                # Measured slower here before: do not spend a compile on it again.
                self.comparison = cached
                self.engine_reason = f"{quick.name}: faster than bfloat16 when measured here"
                return
            self._thread = threading.Thread(target=self._compile_bf16, args=(pack, h, w), daemon=True,
                                            name="engine-compile-bf16")
            self._thread.start()
            return
        if backend == "cuda":
            self.engine: Engine = CudaEngine(net)
            self.engine_reason = "torch fp16 on CUDA"
            return
        if cpu_engine != "auto":
            self.engine_reason = "chosen with --cpu-engine"
            self.engine = make_cpu_engine(cpu_engine, net, h, w)
            return
        key = engine_cache_key(net, h, w)
        cached = load_engine_choice(key)
        if cached is not None:
            self.comparison = cached
            self.engine_reason = f"fastest measured on this machine ({_fmt_cmp(cached)})"
            if cached.get("chosen") == "compile":
                # torch.compile spends seconds in its first call: serve the first frames with a
                # quick engine and swap the compiled one in once it has compiled, off this thread.
                self.engine = self._quick_engine(cached, net, h, w)
                self._thread = threading.Thread(target=self._compile, args=(pack, h, w), daemon=True,
                                                name="engine-compile")
                self._thread.start()
            else:
                self.engine = make_cpu_engine(cached.get("chosen", "eager"), net, h, w)
            return
        # First run on this machine: start at once with eager and measure the alternatives in the
        # background, so the first frame is not delayed. torch.compile compiles slowly, so it is timed
        # by `stylecam bench`, which stores its result here for later runs.
        self.engine = EagerEngine(net)
        self.engine_reason = "eager while ONNX Runtime is measured"
        self._thread = threading.Thread(target=self._measure, args=(pack, h, w, key), daemon=True,
                                        name="engine-compare")
        self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Wait for a background engine measurement (native code must not run into interpreter exit)."""
        t = getattr(self, "_thread", None)
        if t is not None and t.is_alive():
            t.join(timeout)

    @staticmethod
    def _quick_engine(measured: dict, net: StudentNet, h: int, w: int) -> Engine:
        """ONNX Runtime when it was measured on this machine (ready in under a second), else eager."""
        if "onnxruntime_ms" in measured:
            try:
                return make_cpu_engine("onnxruntime", net, h, w)
            except Exception as e:  # noqa: BLE001 - any export/runtime failure: eager still works
                log.warning("onnxruntime unavailable (%s); eager until torch.compile is ready", e)
        return EagerEngine(net)

    def _compile(self, pack: StylePack, h: int, w: int) -> None:
        s = int(pack.architecture["num_styles"])
        try:
            with background_compile():
                engine = make_cpu_engine("compile", pack.build(), h, w)
                engine(np.zeros((1, 3, h, w), np.float32), np.eye(1, s, dtype=np.float32))  # compiles
        except Exception as e:  # noqa: BLE001 - keep running on the quick engine
            log.warning("torch.compile failed (%s); staying on %s", e, self.engine.name)
            return
        self.engine = engine
        log.info("pack %s at %dx%d: compile ready (%s)", pack.name, w, h, self.engine_reason)

    def _compile_bf16(self, pack: StylePack, h: int, w: int) -> None:
        """Compile the bfloat16 student, time it against the fp32 engine on the same input, keep the faster."""
        s = int(pack.architecture["num_styles"])
        x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
        sw = np.eye(1, s, dtype=np.float32)
        quick = self.engine
        try:
            with background_compile():
                engine = CompileBf16Engine(pack.build())
                engine(x, sw)  # compiles
            bf16_ms, fp32_ms = time_engine(engine, x, sw, runs=5), time_engine(quick, x, sw, runs=5)
        except Exception as e:  # noqa: BLE001 - keep running on the fp32 engine
            log.warning("bfloat16 torch.compile failed (%s); staying on %s", e, quick.name)
            self.engine_reason = f"{quick.name}: bfloat16 failed"
            return
        self.comparison = {"size": [w, h], "compile-bf16_ms": round(bf16_ms, 3), f"{quick.name}_ms": round(fp32_ms, 3),
                           "chosen": "compile-bf16" if bf16_ms < fp32_ms else quick.name}
        save_engine_choice(engine_cache_key(pack.build(), h, w) + "|split-bf16", self.comparison)
        self.engine_reason = f"faster measured here (compile-bf16 {bf16_ms:.1f} ms, {quick.name} {fp32_ms:.1f} ms)"
        if bf16_ms < fp32_ms:
            self.engine = engine
        log.info("pack %s at %dx%d, second style of a split: %s (%s)", pack.name, w, h, self.engine.name,
                 self.engine_reason)

    def _measure(self, pack: StylePack, h: int, w: int, key: str) -> None:
        net = pack.build()
        result = compare_cpu_engines(net, h, w, kinds=("eager", "onnxruntime"), runs=5)
        save_engine_choice(key, result)
        self.comparison = result
        chosen = result.get("chosen", "eager")
        if chosen != "eager":
            try:
                self.engine = make_cpu_engine(chosen, pack.build(), h, w)
            except Exception as e:  # keep running on eager
                log.warning("could not switch to %s: %s", chosen, e)
                return
        self.engine_reason = f"fastest measured on this machine ({_fmt_cmp(result)})"
        log.info("pack %s at %dx%d: %s (%s)", pack.name, w, h, self.engine.name, self.engine_reason)

    def run(self, x: np.ndarray, row_weights: np.ndarray) -> np.ndarray:
        return self.engine(x, row_weights[None, :].astype(np.float32))


def _fmt_cmp(c: dict) -> str:
    return ", ".join(f"{k} {c[k + '_ms']:.1f} ms" for k in CPU_ENGINES if k + "_ms" in c)


Mix = dict[str, float]  # style key → weight


class Stylizer:
    """Turn a frame into its stylized version for a style mix, with cross-fades on style changes.

    Args:
        registry: where styles come from.
        backend: ``auto`` / ``cpu`` / ``cuda``.
        internal_size: ``(w, h)`` the students run at; ``None`` = the pack's resolution scaled
            to the frame (cpu) or the frame size (cuda).
        crossfade_ms: duration of a style change.
    """

    def __init__(self, registry: StyleRegistry, backend: str = "auto", internal_size: tuple[int, int] | None = None,
                 cpu_engine: str = "auto", crossfade_ms: float = 300.0, clock: Callable[[], float] = time.monotonic):
        self.registry = registry
        choice = choose_backend(backend)
        self.backend, self.backend_reason = choice.name, choice.reason
        if cpu_engine != "auto" and cpu_engine not in CPU_ENGINES:
            raise InputError(f"--cpu-engine {cpu_engine}: expected one of auto, {', '.join(CPU_ENGINES)}")
        self.cpu_engine = cpu_engine
        self.internal_size = internal_size
        self.crossfade_s = crossfade_ms / 1000.0
        self.clock = clock
        self._runners: dict[tuple[str, tuple[int, int]], PackRunner] = {}
        self._lock = threading.Lock()
        self._current: Mix = {}
        self._previous: Mix = {}
        self._fade_start = -1e9
        self.prepare_ms = 0.0  # accumulated by delta(); the pipeline reads and resets it per frame
        log.info("backend: %s (%s)", self.backend, self.backend_reason)

    # ---- style state -------------------------------------------------------------------
    def set_mix(self, mix: Mix, crossfade: bool = True) -> None:
        mix = {k: float(v) for k, v in mix.items() if v > 0}
        if not mix:
            raise InputError("a style mix needs at least one style with a positive weight")
        total = sum(mix.values())
        mix = {k: v / total for k, v in mix.items()}
        for k in mix:
            self._style(k)
        if crossfade and self._current and self.crossfade_s > 0:
            self._previous = self.current_mix()
            self._fade_start = self.clock()
        else:
            self._previous = {}
        self._current = mix

    def current_mix(self) -> Mix:
        """The mix to render now (mid-fade: a blend of the old and new mixes)."""
        t = (self.clock() - self._fade_start) / self.crossfade_s if self.crossfade_s > 0 else 1.0
        if t >= 1.0 or not self._previous:
            return dict(self._current)
        t = t * t * (3 - 2 * t)
        out: Mix = {}
        for k, v in self._previous.items():
            out[k] = out.get(k, 0.0) + (1 - t) * v
        for k, v in self._current.items():
            out[k] = out.get(k, 0.0) + t * v
        return {k: v for k, v in out.items() if v > 1e-6}

    def _style(self, key: str):
        for s in self.registry.styles:
            if s.key == key:
                return s
        return self.registry.find(key)

    # ---- running -----------------------------------------------------------------------
    def size_for(self, frame_w: int, frame_h: int, pack: StylePack) -> tuple[int, int]:
        if self.internal_size:
            w, h = self.internal_size
        elif self.backend == "cuda":
            w, h = frame_w, frame_h
        else:
            res = pack.resolution or (320, 240)
            w = min(frame_w, res[0])
            h = round(frame_h * w / frame_w)
        return max(4, w // 4 * 4), max(4, h // 4 * 4)

    def runner(self, pack: StylePack, size: tuple[int, int], precision: str = "fp32") -> PackRunner:
        """The runner of ``pack`` at ``size``; ``precision="bf16"`` (CPU only) a bfloat16 one."""
        if precision == "bf16":
            quick = self.runner(pack, size).engine
            key = (pack.name, size, "bf16")
        else:
            quick, key = None, (pack.name, size)
        with self._lock:
            r = self._runners.get(key)
            if r is None:
                r = PackRunner(pack, self.backend, size[1], size[0], self.cpu_engine, quick=quick)
                self._runners[key] = r
                log.info("pack %s at %dx%d: %s (%s)", pack.name, size[0], size[1], r.engine.name, r.engine_reason)
            return r

    def delta_torch(self, frame_t: torch.Tensor, mix: Mix) -> torch.Tensor:
        """Like :meth:`delta` but on a device tensor, for the GPU path (no host round trip).

        Args:
            frame_t: uint8 BGR ``[H, W, 3]`` on the backend's device.
            mix: style key → weight.

        Returns:
            float RGB change ``[1, 3, h, w]`` at internal resolution (fp16 on CUDA).
        """
        from kernels import dispatch

        H, W = frame_t.shape[:2]
        dtype = torch.float16 if frame_t.is_cuda else torch.float32
        out = None
        for pack_name, rows in self._rows_by_pack(mix).items():
            pack = self.registry.packs[pack_name]
            if pack.kind == "lut":
                from . import lut_live

                d = lut_live.delta_on_device(self, pack, rows, frame_t, dtype)  # full resolution
                if out is not None and out.shape != d.shape:
                    out = torch.nn.functional.interpolate(out, size=d.shape[-2:], mode="bilinear",
                                                          align_corners=False)
                out = d if out is None else out + d
                continue
            w, h = self.size_for(W, H, pack)
            r = self.runner(pack, (w, h))
            net = getattr(r.engine, "net", None)
            if net is None:
                raise RuntimeError(f"engine {r.engine.name} has no torch module for the device path")
            total = sum(wt for _, wt in rows)
            rw = torch.zeros(1, pack.architecture["num_styles"], dtype=dtype, device=frame_t.device)
            for i, wt in rows:
                rw[0, i] += wt / total
            with torch.inference_mode():
                x = dispatch.prepare(frame_t, h, w, dtype)
                if frame_t.is_cuda:
                    x = x.contiguous(memory_format=torch.channels_last)
                d = (net(x, rw) - x) * total
            if out is not None and out.shape != d.shape:
                d = torch.nn.functional.interpolate(d, size=out.shape[-2:], mode="bilinear", align_corners=False)
            out = d if out is None else out + d
        return out

    def _rows_by_pack(self, mix: Mix) -> dict[str, list[tuple[int, float]]]:
        by_pack: dict[str, list[tuple[int, float]]] = {}
        for key, wgt in mix.items():
            s = self._style(key)
            by_pack.setdefault(s.pack, []).append((s.index, wgt))
        return by_pack

    def delta(self, frame: np.ndarray, mix: Mix, precision: str = "fp32",
              inputs: dict[tuple[int, int], np.ndarray] | None = None) -> np.ndarray:
        """The style change for ``frame`` at internal resolution.

        Args:
            frame: ``(H, W, 3)`` uint8 BGR.
            mix: style key → weight (sums to 1).
            precision: ``fp32``, or ``bf16`` for a bfloat16 student (CPU; see :class:`CompileBf16Engine`).
            inputs: the frame's network inputs by internal size, shared by the passes of one frame
                (a split's two styles prepare the frame once); filled in here.

        Returns:
            ``(h, w, 3)`` float32 BGR change in [-1, 1] (``stylized - original``, in 0..1 units).
        """
        by_pack = self._rows_by_pack(mix)
        H, W = frame.shape[:2]
        out = None
        x_cache = inputs if inputs is not None else {}
        for pack_name, rows in by_pack.items():
            pack = self.registry.packs[pack_name]
            size = self.size_for(W, H, pack)
            x = x_cache.get(size)
            if x is None:
                t0 = time.perf_counter()
                x = prepare(frame, size)
                self.prepare_ms += (time.perf_counter() - t0) * 1000
                x_cache[size] = x
            r = self.runner(pack, size, precision)
            total = sum(w for _, w in rows)
            rw = np.zeros(pack.architecture["num_styles"], np.float32)
            for i, w in rows:
                rw[i] += w / total
            d = r.run(x, rw)[0] - x[0]  # [3, h, w] RGB change
            d = np.ascontiguousarray(d[::-1].transpose(1, 2, 0))  # (h, w, 3) BGR
            if out is not None and out.shape != d.shape:
                d = cv2.resize(d, (out.shape[1], out.shape[0]), interpolation=cv2.INTER_LINEAR)
            out = d * total if out is None else out + d * total
        return out

    def paints_full_frame(self, mix: Mix) -> bool:
        """True when the mix holds a LUT pack, which colours the full-resolution frame itself
        (:meth:`stylize`) instead of giving a change at internal resolution (:meth:`delta`)."""
        return any(self.registry.packs[p].kind == "lut" for p in self._rows_by_pack(mix))

    def stylize(self, frame: np.ndarray, mix: Mix | None = None) -> np.ndarray:
        """``frame + upsample(delta)`` as uint8 BGR at the frame's size."""
        mix = mix if mix is not None else self.current_mix()
        if self.paints_full_frame(mix):
            from . import lut_live  # LUT packs apply a full-resolution colour table instead

            return lut_live.stylize(self, frame, mix)
        d = self.delta(frame, mix)
        return apply_delta(frame, d)

    def close(self) -> None:
        for r in list(self._runners.values()):
            r.close()

    def comparisons(self) -> dict:
        return {f"{k[0]}@{k[1][0]}x{k[1][1]}" + (f" {k[2]}" if len(k) > 2 else ""): r.comparison
                for k, r in self._runners.items() if r.comparison}

    def engines(self) -> dict[str, str]:
        """``pack@WxH[ bf16]`` → the engine running it now (for benchmarks and the log)."""
        return {f"{k[0]}@{k[1][0]}x{k[1][1]}" + (f" {k[2]}" if len(k) > 2 else ""): r.engine.name
                for k, r in self._runners.items()}

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait for background engine work (measurements, compiles) to finish, e.g. before timing."""
        for r in list(self._runners.values()):
            r.close(timeout)


def prepare(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 BGR ``(H, W, 3)`` → float32 RGB ``[1, 3, h, w]`` in [0, 1] at ``size=(w, h)``."""
    H, W = frame.shape[:2]
    small = frame if (W, H) == size else cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32) * np.float32(1 / 255)


def apply_delta(frame: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Upsample a low-res BGR change (0..1 units) and add it to the full-res uint8 frame."""
    H, W = frame.shape[:2]
    d16 = np.rint(delta * 255.0).astype(np.int16)
    if d16.shape[:2] != (H, W):
        d16 = cv2.resize(d16, (W, H), interpolation=cv2.INTER_LINEAR)
    return cv2.add(frame, d16, dtype=cv2.CV_8U)
