"""CuPy launchers for ``composite.cu`` on CUDA tensors (torch ↔ CuPy through DLPack, no copies).

The module is compiled once per device with NVRTC (CuPy caches the binary on disk) and
launched on torch's current stream, so the kernels order correctly with the surrounding
torch work without any synchronisation.

Example::

    out = cupy_ops.composite(frame_gpu, mask_gpu, fg=stylized_delta, bg=None,
                             fg_mode="delta", threshold=0.4, feather=0.1)
    change = cupy_ops.lut_delta(frame_gpu, lut_gpu, scale=0.7, out_dtype=torch.float16)  # a LUT look
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from kernels import composite_ops
from kernels.composite_ops import Launch
from kernels.errors import KernelInputError


class CupyRunner:
    """Executes :class:`~kernels.composite_ops.Launch` descriptions with CuPy on CUDA tensors."""

    name = "cupy"

    def __init__(self) -> None:
        import cupy  # imported here so the CPU path never needs CuPy

        self._cp = cupy
        self._modules: dict[int, Any] = {}

    def _function(self, device: int, kernel: str):
        mod = self._modules.get(device)
        if mod is None:
            with self._cp.cuda.Device(device):
                mod = self._cp.RawModule(code=composite_ops.source(), backend="nvrtc",
                                         options=(*composite_ops.NVRTC_OPTIONS, *composite_ops.compile_options()))
            self._modules[device] = mod
        return mod.get_function(kernel)

    def check_device(self, name: str, device: torch.device) -> None:
        if device.type != "cuda":
            raise KernelInputError(f"{name}: the CuPy kernels need CUDA tensors, got {device}")

    def __call__(self, launch: Launch) -> None:
        cp = self._cp
        device = next(a.value.device for a in launch.args if a.kind == "ptr" and a.value is not None)
        with cp.cuda.Device(device.index):
            fn = self._function(device.index, launch.kernel)
            stream = cp.cuda.ExternalStream(torch.cuda.current_stream(device).cuda_stream, device.index)
            with stream:  # DLPack exchange on torch's own stream: no cross-stream event is needed
                self._launch(fn, launch, stream)

    def _launch(self, fn, launch: Launch, stream) -> None:
        cp = self._cp
        args = []
        for a in launch.args:
            if a.kind == "ptr":
                # DLPack shares the torch allocation; a null pointer marks an absent input.
                args.append(np.uint64(0) if a.value is None else cp.from_dlpack(a.value))
            elif a.kind == "i32":
                args.append(np.int32(a.value))
            else:
                args.append(np.float32(a.value))
        fn(launch.grid, launch.block, tuple(args), stream=stream)


_RUNNER: CupyRunner | None = None


def runner() -> CupyRunner:
    """The process-wide CuPy runner (created on first use)."""
    global _RUNNER
    if _RUNNER is None:
        _RUNNER = CupyRunner()
    return _RUNNER


def prepare(frame: torch.Tensor, out_h: int, out_w: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 BGR ``[H, W, 3]`` (CUDA) → float RGB ``[1, 3, out_h, out_w]``; see :func:`kernels.reference.prepare`."""
    return composite_ops.prepare(frame, out_h, out_w, dtype, runner())


def composite(frame: torch.Tensor, mask: torch.Tensor, fg: torch.Tensor | None = None,
              bg: torch.Tensor | None = None, fg_mode: Any = "image", bg_mode: Any = "image",
              threshold: float = 0.5, feather: float = 0.1, strength: float = 1.0) -> torch.Tensor:
    """One-pass compositing on CUDA tensors; see :func:`kernels.reference.composite`."""
    return composite_ops.composite(frame, mask, fg, bg, fg_mode, bg_mode, threshold, feather, strength, runner())


def masked_blur(image: torch.Tensor, mask: torch.Tensor, sigma: float, threshold: float = 0.5,
                feather: float = 0.1, out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Mask-weighted Gaussian blur on CUDA tensors; see :func:`kernels.reference.masked_blur`."""
    return composite_ops.masked_blur(image, mask, sigma, threshold, feather, out_dtype, runner())


def lut_delta(frame: torch.Tensor, lut: torch.Tensor, scale: float = 1.0,
              out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A 3D LUT look's change on a CUDA frame, in one pass; see :func:`kernels.reference.lut_delta`."""
    return composite_ops.lut_delta(frame, lut, scale, out_dtype, runner())
