"""Comparison helpers for kernel tests: one place that prints the first mismatches."""

from __future__ import annotations

import torch


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float = 0.0,
                 name: str = "output", show: int = 5) -> None:
    """Fail with the first ``show`` mismatching elements (index, actual, expected)."""
    assert actual.shape == expected.shape, f"{name}: shape {list(actual.shape)} != {list(expected.shape)}"
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    bad = ~((a - e).abs() <= atol + rtol * e.abs())
    if bad.any():
        idx = bad.nonzero()[:show]
        rows = [f"  {tuple(i.tolist())}: got {a[tuple(i)].item():.6g}, want {e[tuple(i)].item():.6g}" for i in idx]
        raise AssertionError(f"{name}: {int(bad.sum())}/{bad.numel()} elements off by more than "
                             f"atol={atol} rtol={rtol}; max abs err {(a - e).abs().max().item():.3g}\n"
                             + "\n".join(rows))


def assert_u8_close(actual: torch.Tensor, expected: torch.Tensor, name: str = "frame", tol: int = 1) -> None:
    """uint8 images equal within ``tol`` levels everywhere."""
    assert actual.dtype == torch.uint8 and expected.dtype == torch.uint8, f"{name}: expected uint8 tensors"
    assert_close(actual.int(), expected.int(), atol=tol, name=name)


TOL = {torch.float32: (2e-5, 2e-5), torch.float16: (2e-3, 2e-3), torch.bfloat16: (1.6e-2, 1.6e-2)}
