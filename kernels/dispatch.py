"""Pick the fastest working implementation of each op and say which one runs.

On a machine where CUDA, Triton and CuPy all work, CUDA tensors go to the fused Triton norm
and the CuPy compositing kernels; anything else (CPU tensors, a missing package, a kernel that
fails its start-up self-check) goes to the torch references in :mod:`kernels.reference`.
:func:`gpu_status` gives the one-line reason for the log line and status bar::

    ok, reason = gpu_status()   # (True, "cuda: triton norm + cupy compositing (NVIDIA H100 ...)")
    log.info(reason)
    realtime.student.set_norm_impl(student_norm_impl())   # None = keep the reference
    frame_out = composite(frame_gpu, mask, fg=delta, fg_mode="delta", threshold=0.4)

The compositing provider also serves the CuPy LUT kernel (:func:`lut_delta`, the same ``.cu`` source).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch

from kernels import reference
from kernels.reference import NormState


@dataclass(frozen=True)
class Providers:
    """Which implementation serves CUDA tensors, and why."""

    norm: str  # "triton" or "reference"
    composite: str  # "cupy" or "reference"
    reason: str  # one line for a log or status bar


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:160]


def _self_check_triton() -> None:
    """Run the Triton norm once on a small CUDA tensor and compare with the reference."""
    from kernels import triton_norm

    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(2, 3, 17, 19, generator=g).cuda().half()
    gamma, beta = torch.randn(2, 3, generator=g).cuda(), torch.randn(2, 3, generator=g).cuda()
    y = triton_norm.cond_instance_norm(x, gamma, beta, None, "leaky")
    ref = reference.cond_instance_norm(x, gamma, beta, None, "leaky")
    if not torch.allclose(y.float(), ref.float(), atol=2e-2, rtol=1e-2):
        raise RuntimeError("triton norm self-check mismatch against the reference")


def _self_check_cupy() -> None:
    """Run the CuPy compositing kernel once on a small frame and compare with the reference."""
    from kernels import cupy_ops

    g = torch.Generator(device="cpu").manual_seed(0)
    frame = torch.randint(0, 256, (9, 13, 3), dtype=torch.uint8, generator=g).cuda()
    mask = torch.rand(4, 5, generator=g).cuda()
    fg = torch.rand(1, 3, 3, 4, generator=g).cuda().half()
    out = cupy_ops.composite(frame, mask, fg, None, "image", "image", 0.4, 0.1, 0.9)
    ref = reference.composite(frame, mask, fg, None, "image", "image", 0.4, 0.1, 0.9)
    if (out.int() - ref.int()).abs().max().item() > 1:
        raise RuntimeError("cupy compositing self-check mismatch against the reference")
    lut = (torch.rand(3, 5, 5, 5, generator=g) * 1.2 - 0.1).cuda()
    d = cupy_ops.lut_delta(frame, lut, 0.8, torch.float32)
    if not torch.allclose(d, reference.lut_delta(frame, lut, 0.8, torch.float32), atol=1e-5):
        raise RuntimeError("cupy LUT self-check mismatch against the reference")


@functools.lru_cache(maxsize=1)
def providers() -> Providers:
    """Probe CUDA, Triton and CuPy once (imports, compiles and a self-check on a tiny input)."""
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        return Providers("reference", "reference", "reference ops: TRITON_INTERPRET=1 is set (CPU interpreter)")
    if not torch.cuda.is_available():
        why = "torch built without CUDA" if torch.version.cuda is None else "no CUDA device visible"
        return Providers("reference", "reference", f"reference ops: {why}")
    notes = []
    norm = comp = "reference"
    try:
        import triton  # noqa: F401
    except ImportError:
        notes.append("triton not installed")
    else:
        try:
            _self_check_triton()
            norm = "triton"
        except Exception as err:  # any failure here means: do not use it, and say why
            notes.append(f"triton failed ({_first_line(err)})")
    try:
        import cupy  # noqa: F401
    except ImportError:
        notes.append("cupy not installed")
    else:
        try:
            _self_check_cupy()
            comp = "cupy"
        except Exception as err:
            notes.append(f"cupy failed ({_first_line(err)})")
    gpu = torch.cuda.get_device_name()
    if norm == "triton" and comp == "cupy":
        return Providers(norm, comp, f"cuda: triton norm + cupy compositing ({gpu})")
    parts = [f"{norm} norm", f"{comp} compositing"]
    return Providers(norm, comp, f"cuda ({gpu}): {' + '.join(parts)}; {'; '.join(notes)}")


def gpu_status() -> tuple[bool, str]:
    """``(ok, reason)``: ok when both GPU providers work; reason is one line for log/status bar."""
    p = providers()
    return p.norm == "triton" and p.composite == "cupy", p.reason


def _use_triton(x: Any) -> bool:
    return isinstance(x, torch.Tensor) and x.is_cuda and providers().norm == "triton"


def uses_cupy(t: Any) -> bool:
    """True when the CuPy kernels serve ``t`` (a CUDA tensor, and CuPy passed its self-check)."""
    return isinstance(t, torch.Tensor) and t.is_cuda and providers().composite == "cupy"


def cond_instance_norm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                       style_idx: torch.Tensor | None = None, act: str | None = "relu",
                       residual: torch.Tensor | None = None, eps: float = 1e-5,
                       stats_state: NormState | None = None, momentum: float | None = None
                       ) -> torch.Tensor | tuple[torch.Tensor, NormState]:
    """Conditional instance norm: Triton on CUDA when it works, else the reference.

    Same contract as :func:`kernels.reference.cond_instance_norm`.
    """
    if _use_triton(x):
        from kernels import triton_norm

        return triton_norm.cond_instance_norm(x, gamma, beta, style_idx, act, residual, eps, stats_state, momentum)
    return reference.cond_instance_norm(x, gamma, beta, style_idx, act, residual, eps, stats_state, momentum)


def student_norm_impl() -> Callable[..., torch.Tensor] | None:
    """The op for ``realtime.student.set_norm_impl``: the fused Triton adapter, or None (keep the default).

    The adapter has the signature ``fn(x, gamma[N, C], beta[N, C], act, residual, eps)``; it
    falls back to the reference for CPU tensors, so it is safe to install on any device.
    """
    return norm_rows if providers().norm == "triton" else None


def norm_rows(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, act: str | None,
              residual: torch.Tensor | None, eps: float) -> torch.Tensor:
    """``set_norm_impl`` signature, dispatched per call on the device of ``x``."""
    if _use_triton(x):
        from kernels import triton_norm

        return triton_norm.norm_rows(x, gamma, beta, act, residual, eps)
    return reference.norm_rows(x, gamma, beta, act, residual, eps)


def prepare(frame: Any, out_h: int, out_w: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 BGR ``[H, W, 3]`` → float RGB ``[1, 3, out_h, out_w]``; CuPy for CUDA frames."""
    if uses_cupy(frame):
        from kernels import cupy_ops

        return cupy_ops.prepare(frame, out_h, out_w, dtype)
    return reference.prepare(frame, out_h, out_w, dtype)


def composite(frame: Any, mask: Any, fg: Any = None, bg: Any = None, fg_mode: Any = "image",
              bg_mode: Any = "image", threshold: float = 0.5, feather: float = 0.1,
              strength: float = 1.0) -> torch.Tensor:
    """One-pass compositing to uint8 BGR ``[H, W, 3]``; CuPy for CUDA frames.

    See :func:`kernels.reference.composite` for the definition and arguments.
    """
    if uses_cupy(frame):
        from kernels import cupy_ops

        return cupy_ops.composite(frame, mask, fg, bg, fg_mode, bg_mode, threshold, feather, strength)
    return reference.composite(frame, mask, fg, bg, fg_mode, bg_mode, threshold, feather, strength)


def masked_blur(image: Any, mask: Any, sigma: float, threshold: float = 0.5, feather: float = 0.1,
                out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Background blur weighted by ``1 - alpha``; CuPy for CUDA images.

    See :func:`kernels.reference.masked_blur` for the definition and arguments.
    """
    if uses_cupy(image):
        from kernels import cupy_ops

        return cupy_ops.masked_blur(image, mask, sigma, threshold, feather, out_dtype)
    return reference.masked_blur(image, mask, sigma, threshold, feather, out_dtype)


def lut_delta(frame: Any, lut: Any, scale: float = 1.0, out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A 3D LUT look's change ``scale · (LUT(x) − x)``, float RGB ``[1, 3, H, W]``; CuPy for CUDA frames.

    See :func:`kernels.reference.lut_delta` for the definition and arguments.
    """
    if uses_cupy(frame):
        from kernels import cupy_ops

        return cupy_ops.lut_delta(frame, lut, scale, out_dtype)
    return reference.lut_delta(frame, lut, scale, out_dtype)
