"""Launch planning for the CUDA C frame kernels in ``composite.cu`` (compositing and a LUT look's change).

The ops here check their arguments, allocate outputs and describe each kernel launch
(:class:`Launch`: kernel name, grid, block, typed arguments). A *runner* executes the
launches: :class:`kernels.cupy_ops.CupyRunner` on a GPU, :class:`kernels.emu.EmuRunner` on the
CPU through the same source compiled by g++. Both share this planning code, so the CPU tests
exercise the exact arguments the GPU receives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from kernels._checks import (
    as_tensor, check_finite, check_frame, check_image, check_lut, check_map, check_mask, check_mode, check_out_dtype,
    check_range, check_size,
)
from kernels.reference import BLUR_EPS, MAX_SIGMA, gaussian_taps

SOURCE_PATH = Path(__file__).with_name("composite.cu")
KERNELS = ("prepare", "composite", "blur_h", "blur_v", "lut_delta")

# Compile-time constants injected into composite.cu as -D defines.
DEFINES: dict[str, str] = {
    "BLOCK_X": "32",  # a warp along a row: coalesced uint8/float row accesses
    "BLOCK_Y": "8",
    "BLUR_EPS": f"{BLUR_EPS!r}f",
}
BLOCK = (int(DEFINES["BLOCK_X"]), int(DEFINES["BLOCK_Y"]), 1)

DT_NONE, DT_F32, DT_F16 = 0, 1, 2
_DT = {torch.float32: DT_F32, torch.float16: DT_F16}


def source() -> str:
    """The CUDA C source text."""
    return SOURCE_PATH.read_text()


def compile_options() -> tuple[str, ...]:
    """``-D`` options carrying :data:`DEFINES` (the same for NVRTC and g++)."""
    return tuple(f"-D{k}={v}" for k, v in DEFINES.items())


# NVRTC options besides the defines; CuPy's RawModule adds -ftz=true and the architecture itself.
NVRTC_OPTIONS = ("-std=c++17",)


@dataclass(frozen=True)
class Arg:
    """One kernel argument: ``kind`` is ``"ptr"`` (tensor or None), ``"i32"`` or ``"f32"``."""

    kind: str
    value: Any


@dataclass
class Launch:
    """A kernel launch: name, grid and block sizes (x, y, z), arguments."""

    kernel: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    args: list[Arg]
    keep: list[torch.Tensor] = field(default_factory=list)  # temporaries alive until it ran


class Runner(Protocol):
    """Executes :class:`Launch` descriptions on one kind of device."""

    name: str

    def check_device(self, name: str, device: torch.device) -> None: ...

    def __call__(self, launch: Launch) -> None: ...


def _grid(h: int, w: int) -> tuple[int, int, int]:
    return (math.ceil(w / BLOCK[0]), math.ceil(h / BLOCK[1]), 1)


def _ptr(t: torch.Tensor | None) -> Arg:
    return Arg("ptr", t)


def _i32(v: int) -> Arg:
    return Arg("i32", int(v))


def _f32(v: float) -> Arg:
    return Arg("f32", float(v))


def _treatment_args(name: str, t: Any, mode: Any, device: torch.device) -> tuple[list[Arg], torch.Tensor | None]:
    code = check_mode(f"{name}_mode", mode)
    if t is None:
        return [_ptr(None), _i32(DT_NONE), _i32(code), _i32(1), _i32(1)], None
    if code == 2:  # a colour map: 30 float32 coefficients, no image
        m = check_map(name, t, device).contiguous()
        return [_ptr(m), _i32(_DT[torch.float32]), _i32(code), _i32(1), _i32(1)], m
    img = check_image(name, t, device).contiguous()
    return [_ptr(img), _i32(_DT[img.dtype]), _i32(code), _i32(img.shape[2]), _i32(img.shape[3])], img


def prepare(frame: Any, out_h: int, out_w: int, dtype: torch.dtype, runner: Runner) -> torch.Tensor:
    """uint8 BGR frame → float RGB ``[1, 3, out_h, out_w]`` (see :func:`kernels.reference.prepare`)."""
    f = check_frame("frame", frame)
    runner.check_device("frame", f.device)
    out_h, out_w = check_size("out_h", out_h), check_size("out_w", out_w)
    check_out_dtype("dtype", dtype)
    f = f.contiguous()
    out = torch.empty((1, 3, out_h, out_w), dtype=dtype, device=f.device)
    h, w = f.shape[:2]
    runner(Launch("prepare", _grid(out_h, out_w), BLOCK,
                  [_ptr(f), _i32(h), _i32(w), _ptr(out), _i32(_DT[dtype]), _i32(out_h), _i32(out_w)]))
    return out


def composite(frame: Any, mask: Any, fg: Any, bg: Any, fg_mode: Any, bg_mode: Any, threshold: float,
              feather: float, strength: float, runner: Runner) -> torch.Tensor:
    """One-pass compositing to uint8 BGR ``[H, W, 3]`` (see :func:`kernels.reference.composite`)."""
    f = check_frame("frame", frame)
    runner.check_device("frame", f.device)
    f = f.contiguous()
    m = check_mask("mask", mask, f.device).contiguous()
    fg_args, fg_t = _treatment_args("fg", fg, fg_mode, f.device)
    bg_args, bg_t = _treatment_args("bg", bg, bg_mode, f.device)
    threshold = check_range("threshold", threshold, 0.0, 1.0)
    feather = check_range("feather", feather, 0.0, 1.0)
    strength = check_range("strength", strength, 0.0, 1.0)
    h, w = f.shape[:2]
    out = torch.empty_like(f)
    args = [_ptr(f), _ptr(out), _i32(h), _i32(w),
            _ptr(m), _i32(_DT[m.dtype]), _i32(m.shape[0]), _i32(m.shape[1]),
            *fg_args, *bg_args, _f32(threshold), _f32(feather), _f32(strength)]
    runner(Launch("composite", _grid(h, w), BLOCK, args, keep=[t for t in (fg_t, bg_t) if t is not None]))
    return out


def masked_blur(image: Any, mask: Any, sigma: float, threshold: float, feather: float,
                out_dtype: torch.dtype, runner: Runner) -> torch.Tensor:
    """Mask-weighted separable Gaussian blur (see :func:`kernels.reference.masked_blur`)."""
    t = as_tensor("image", image)
    if t.dtype == torch.uint8:
        img, kind = check_frame("image", t), 0
        h, w = img.shape[:2]
    else:
        img = check_image("image", t)
        kind, (h, w) = _DT[img.dtype], img.shape[2:]
    runner.check_device("image", img.device)
    img = img.contiguous()
    m = check_mask("mask", mask, img.device).contiguous()
    sigma = check_range("sigma", sigma, 0.0, MAX_SIGMA)
    threshold = check_range("threshold", threshold, 0.0, 1.0)
    feather = check_range("feather", feather, 0.0, 1.0)
    check_out_dtype("out_dtype", out_dtype)
    taps = gaussian_taps(sigma).to(img.device)
    radius = (taps.numel() - 1) // 2
    tmp = torch.empty((4, h, w), dtype=torch.float32, device=img.device)
    out = torch.empty((1, 3, h, w), dtype=out_dtype, device=img.device)
    grid = _grid(h, w)
    runner(Launch("blur_h", grid, BLOCK,
                  [_ptr(img), _i32(kind), _i32(h), _i32(w),
                   _ptr(m), _i32(_DT[m.dtype]), _i32(m.shape[0]), _i32(m.shape[1]), _f32(threshold), _f32(feather),
                   _ptr(taps), _i32(radius), _ptr(tmp)], keep=[taps]))
    runner(Launch("blur_v", grid, BLOCK,
                  [_ptr(tmp), _i32(h), _i32(w), _ptr(taps), _i32(radius), _ptr(out), _i32(_DT[out_dtype])],
                  keep=[taps, tmp]))
    return out


def lut_delta(frame: Any, lut: Any, scale: float, out_dtype: torch.dtype, runner: Runner) -> torch.Tensor:
    """A 3D LUT look's change ``scale · (LUT(x) − x)`` as float RGB ``[1, 3, H, W]``
    (see :func:`kernels.reference.lut_delta`)."""
    f = check_frame("frame", frame)
    runner.check_device("frame", f.device)
    f = f.contiguous()
    table = check_lut("lut", lut, f.device).contiguous()
    scale = check_finite("scale", scale)
    check_out_dtype("out_dtype", out_dtype)
    h, w = f.shape[:2]
    out = torch.empty((1, 3, h, w), dtype=out_dtype, device=f.device)
    runner(Launch("lut_delta", _grid(h, w), BLOCK,
                  [_ptr(f), _i32(h), _i32(w), _ptr(table), _i32(table.shape[-1]), _f32(scale),
                   _ptr(out), _i32(_DT[out_dtype])], keep=[table]))
    return out


def wheel_nvrtc_paths() -> list[Path]:
    """``libnvrtc.so*`` files shipped by the ``nvidia-cuda-nvrtc`` wheel (empty if not installed)."""
    try:
        import nvidia  # namespace package of the NVIDIA wheels
    except ImportError:
        return []
    found: list[Path] = []
    for root in getattr(nvidia, "__path__", []):
        found += sorted(Path(root).glob("*/lib/libnvrtc.so*"))
    return [p for p in found if "builtins" not in p.name]


def nvrtc_version() -> tuple[tuple[int, int], str]:
    """Load NVRTC through CuPy's bindings and return ``((major, minor), library path)``.

    CuPy finds the wheel's library by itself in normal installs; if it does not (an unusual
    layout, an old CuPy), the wheel's ``libnvrtc.so`` is preloaded globally and the lookup retried.
    """
    import ctypes

    from cupy.cuda import nvrtc

    try:
        version = nvrtc.getVersion()
    except Exception:
        paths = wheel_nvrtc_paths()
        if not paths:
            raise
        ctypes.CDLL(str(paths[0]), mode=ctypes.RTLD_GLOBAL)
        version = nvrtc.getVersion()
    path = "unknown"
    try:
        with open("/proc/self/maps") as maps:
            path = next((ln.split()[-1] for ln in maps if "libnvrtc.so" in ln), path)
    except OSError:
        pass
    return tuple(version), path


def compile_nvrtc(arch: str) -> bytes:
    """Compile ``composite.cu`` with NVRTC for ``arch`` (e.g. ``"sm_80"``) and return the CUBIN.

    Needs only the NVRTC library (the ``nvidia-cuda-nvrtc`` wheel), no GPU.

    Raises:
        RuntimeError: with the NVRTC log when compilation fails.
    """
    from cupy.cuda import nvrtc

    nvrtc_version()
    prog = nvrtc.createProgram(source(), SOURCE_PATH.name, [], [])
    try:
        opts = [f"--gpu-architecture={arch}", "-ftz=true", *NVRTC_OPTIONS, *compile_options()]
        try:
            nvrtc.compileProgram(prog, opts)
        except nvrtc.NVRTCError as err:
            raise RuntimeError(f"NVRTC failed for {arch}: {err}\n{nvrtc.getProgramLog(prog)}") from err
        return nvrtc.getCUBIN(prog)
    finally:
        nvrtc.destroyProgram(prog)

