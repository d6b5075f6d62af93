"""Argument checks shared by the references and the GPU launchers.

Every check raises :class:`~kernels.errors.KernelInputError` naming the argument and what was
expected, so a bad call fails on one line instead of deep inside a kernel.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from kernels.errors import KernelInputError

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
IMAGE_DTYPES = (torch.float16, torch.float32)
MODES = {"image": 0, "delta": 1, "map": 2, 0: 0, 1: 1, 2: 2}
MAP_TERMS = 10  # a colour map's terms per output channel: r, g, b, r², g², b², rg, gb, rb, 1
MAX_LUT_DIM = 129  # lattice points per axis of a 3D LUT (the looks use 17 and 33)


def as_tensor(name: str, value: Any) -> torch.Tensor:
    """Accept a torch tensor or a numpy array (shared memory, no copy)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    raise KernelInputError(f"{name}: expected a torch tensor or numpy array, got {type(value).__name__}")


def _dtype_names(dtypes) -> str:
    return "/".join(str(d).replace("torch.", "") for d in dtypes)


def check_frame(name: str, frame: Any) -> torch.Tensor:
    """A uint8 BGR frame ``[H, W, 3]``."""
    t = as_tensor(name, frame)
    if t.dtype != torch.uint8:
        raise KernelInputError(f"{name}: expected dtype uint8 (BGR frame), got {t.dtype}")
    if t.dim() != 3 or t.shape[2] != 3 or t.shape[0] < 1 or t.shape[1] < 1:
        raise KernelInputError(f"{name}: expected shape [H, W, 3], got {list(t.shape)}")
    return t


def check_mask(name: str, mask: Any, device: torch.device) -> torch.Tensor:
    """A float person-probability mask ``[h, w]`` (``[1, 1, h, w]`` and ``[1, h, w]`` are squeezed)."""
    t = as_tensor(name, mask)
    while t.dim() > 2 and t.shape[0] == 1:
        t = t[0]
    if t.dtype not in IMAGE_DTYPES:
        raise KernelInputError(f"{name}: expected dtype {_dtype_names(IMAGE_DTYPES)}, got {t.dtype}")
    if t.dim() != 2 or t.shape[0] < 1 or t.shape[1] < 1:
        raise KernelInputError(f"{name}: expected shape [h, w], got {list(as_tensor(name, mask).shape)}")
    check_device(name, t, device)
    return t


def check_image(name: str, image: Any, device: torch.device | None = None,
                dtypes=IMAGE_DTYPES) -> torch.Tensor:
    """A float RGB image ``[1, 3, H, W]``."""
    t = as_tensor(name, image)
    if t.dtype not in dtypes:
        raise KernelInputError(f"{name}: expected dtype {_dtype_names(dtypes)}, got {t.dtype}")
    if t.dim() != 4 or t.shape[0] != 1 or t.shape[1] != 3 or t.shape[2] < 1 or t.shape[3] < 1:
        raise KernelInputError(f"{name}: expected shape [1, 3, H, W], got {list(t.shape)}")
    if device is not None:
        check_device(name, t, device)
    return t


def check_device(name: str, t: torch.Tensor, device: torch.device) -> None:
    if t.device != device:
        raise KernelInputError(f"{name}: expected a tensor on {device}, got {t.device}")


def check_mode(name: str, mode: Any) -> int:
    if mode not in MODES or isinstance(mode, bool):
        raise KernelInputError(f"{name}: expected 'image' (0), 'delta' (1) or 'map' (2), got {mode!r}")
    return MODES[mode]


def check_map(name: str, coeffs: Any, device: torch.device | None = None) -> torch.Tensor:
    """A quadratic colour map's coefficients: float32 ``[10, 3]`` (terms × output RGB), finite."""
    t = as_tensor(name, coeffs)
    if t.dtype != torch.float32 or tuple(t.shape) != (MAP_TERMS, 3):
        raise KernelInputError(f"{name}: a colour map must be float32 [{MAP_TERMS}, 3], got {t.dtype} {list(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise KernelInputError(f"{name}: the colour map holds NaN or Inf")
    if device is not None:
        check_device(name, t, device)
    return t


def check_lut(name: str, lut: Any, device: torch.device | None = None) -> torch.Tensor:
    """A 3D LUT: float32 ``[3, D, D, D]`` indexed ``[c, r, g, b]``, ``2 <= D <= 129``.

    Its values are not scanned for NaN: that would cost a device synchronisation on every frame,
    and a NaN entry only makes the pixels that sample it NaN, in the reference as in the kernel.
    """
    t = as_tensor(name, lut)
    d = t.shape[-1] if t.dim() == 4 else 0
    if t.dtype != torch.float32 or t.dim() != 4 or tuple(t.shape) != (3, d, d, d) or not 2 <= d <= MAX_LUT_DIM:
        raise KernelInputError(f"{name}: a 3D LUT must be float32 [3, D, D, D] with 2 <= D <= {MAX_LUT_DIM}, "
                               f"got {t.dtype} {list(t.shape)}")
    if device is not None:
        check_device(name, t, device)
    return t


def check_finite(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise KernelInputError(f"{name}: expected a finite number, got {value!r}") from None
    if not math.isfinite(v):
        raise KernelInputError(f"{name}: expected a finite number, got {value!r}")
    return v


def check_range(name: str, value: float, lo: float, hi: float) -> float:
    v = float(value)
    if not (lo <= v <= hi):  # also rejects NaN
        raise KernelInputError(f"{name}: expected a number in [{lo}, {hi}], got {value!r}")
    return v


def check_size(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise KernelInputError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def check_out_dtype(name: str, dtype: Any) -> torch.dtype:
    if dtype not in IMAGE_DTYPES:
        raise KernelInputError(f"{name}: expected torch.float16 or torch.float32, got {dtype!r}")
    return dtype


def check_norm_args(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, style_idx,
                    act, residual, eps, stats_state, momentum) -> None:
    """Validate the arguments of ``cond_instance_norm`` (reference and Triton share this)."""
    for name, t in (("x", x), ("gamma", gamma), ("beta", beta)):
        if not isinstance(t, torch.Tensor):
            raise KernelInputError(f"{name}: expected a torch tensor, got {type(t).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise KernelInputError(f"x: expected dtype {_dtype_names(FLOAT_DTYPES)}, got {x.dtype}")
    if x.dim() != 4 or min(x.shape) < 1:
        raise KernelInputError(f"x: expected shape [N, C, H, W] with every size >= 1, got {list(x.shape)}")
    n, c = x.shape[:2]
    for name, t in (("gamma", gamma), ("beta", beta)):
        check_device(name, t, x.device)
        if not t.is_floating_point():
            raise KernelInputError(f"{name}: expected a float tensor, got {t.dtype}")
        if t.dim() != 2 or t.shape[1] != c:
            raise KernelInputError(f"{name}: expected shape [S, {c}] (one row per style), got {list(t.shape)}")
    if gamma.shape != beta.shape:
        raise KernelInputError(f"beta: expected the shape of gamma {list(gamma.shape)}, got {list(beta.shape)}")
    s = gamma.shape[0]
    if style_idx is None:
        if s != n:
            raise KernelInputError(f"gamma: without style_idx, expected per-sample rows [{n}, {c}], "
                                   f"got {list(gamma.shape)}")
    else:
        if not isinstance(style_idx, torch.Tensor):
            raise KernelInputError(f"style_idx: expected a tensor, got {type(style_idx).__name__}")
        check_device("style_idx", style_idx, x.device)
        if style_idx.is_floating_point():
            if style_idx.shape != (n, s):
                raise KernelInputError(f"style_idx: expected weights [{n}, {s}], got {list(style_idx.shape)}")
        elif style_idx.dtype in (torch.int32, torch.int64):
            if style_idx.shape != (n,):
                raise KernelInputError(f"style_idx: expected indices [{n}], got {list(style_idx.shape)}")
            # One small reduction; indexes out of range would read outside gamma.
            lo, hi = int(style_idx.min()), int(style_idx.max())
            if lo < 0 or hi >= s:
                raise KernelInputError(f"style_idx: expected indices in 0..{s - 1}, got {lo}..{hi}")
        else:
            raise KernelInputError(f"style_idx: expected int32/int64 indices or float weights, got {style_idx.dtype}")
    if act not in ("relu", "leaky", None):
        raise KernelInputError(f"act: expected 'relu', 'leaky' or None, got {act!r}")
    if residual is not None:
        if not isinstance(residual, torch.Tensor):
            raise KernelInputError(f"residual: expected a tensor, got {type(residual).__name__}")
        check_device("residual", residual, x.device)
        if residual.shape != x.shape or residual.dtype != x.dtype:
            raise KernelInputError(f"residual: expected {x.dtype} {list(x.shape)} like x, "
                                   f"got {residual.dtype} {list(residual.shape)}")
    if not (float(eps) > 0.0):
        raise KernelInputError(f"eps: expected a positive number, got {eps!r}")
    if momentum is not None:
        check_range("momentum", momentum, 0.0, 1.0)
    if stats_state is not None:
        if momentum is None:
            raise KernelInputError("stats_state: given without momentum; pass momentum in [0, 1]")
        if not (isinstance(stats_state, (tuple, list)) and len(stats_state) == 2):
            raise KernelInputError("stats_state: expected a (mean, var) pair of [N, C] float32 tensors")
        for name, t in zip(("stats_state[0]", "stats_state[1]"), stats_state):
            if not isinstance(t, torch.Tensor) or t.shape != (n, c) or t.dtype != torch.float32:
                got = f"{t.dtype} {list(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
                raise KernelInputError(f"{name}: expected float32 [{n}, {c}], got {got}")
            check_device(name, t, x.device)
