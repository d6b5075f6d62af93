"""A global quadratic colour map: what a guided style applies to every frame.

Per output channel ``c`` (RGB, values in [0, 1])::

    out_c = M[0,c]·r + M[1,c]·g + M[2,c]·b + M[3,c]·r² + M[4,c]·g² + M[5,c]·b²
          + M[6,c]·rg + M[7,c]·gb + M[8,c]·rb + M[9,c]

``M`` is ``(10, 3)`` float. It is fitted by ridge-regularised least squares between a keyframe and
the teacher's output for it (:func:`fit_map`), blended into the running map (:func:`blend_maps`)
and applied to full-resolution uint8 BGR frames with a handful of OpenCV ops (:func:`apply_map`),
or to RGB tensors with torch ops (:func:`apply_map_torch`, the CUDA path).
"""

from __future__ import annotations

import cv2
import numpy as np

TERMS = ("r", "g", "b", "r2", "g2", "b2", "rg", "gb", "rb", "1")
N_TERMS = len(TERMS)


def identity_map() -> np.ndarray:
    """The map that changes nothing: ``(10, 3)``."""
    m = np.zeros((N_TERMS, 3), np.float64)
    m[0, 0] = m[1, 1] = m[2, 2] = 1.0
    return m


def check_map(m, what: str = "map") -> np.ndarray:
    """``m`` as a finite ``(10, 3)`` float64 array; ``ValueError`` naming ``what`` otherwise."""
    try:
        a = np.asarray(m, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected 10×3 numbers") from None
    if a.shape != (N_TERMS, 3):
        raise ValueError(f"{what}: expected 10 rows of 3 numbers (terms {', '.join(TERMS)}), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{what}: holds NaN or infinite values")
    return a


def features(rgb: np.ndarray) -> np.ndarray:
    """The ten terms of every pixel.

    Shape:
        rgb: ``(N, 3)`` float RGB in [0, 1]; returns ``(N, 10)`` float64.
    """
    x = np.asarray(rgb, np.float64).reshape(-1, 3)
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    return np.stack([r, g, b, r * r, g * g, b * b, r * g, g * b, r * b, np.ones_like(r)], axis=1)


#: ridge weight per term: the constant is cheap, so what a flat keyframe asks for becomes an even shift
#: of every colour rather than a tilt of the curves that would swing colours far from the keyframe's.
_PENALTY = np.array([1.0] * 9 + [0.01])


def fit_map(src: np.ndarray, dst: np.ndarray, prior: np.ndarray | None = None, ridge: float = 1e-4,
            clip: float = 2.0 / 255.0) -> np.ndarray:
    """Fit ``M`` so that ``features(src) @ M ≈ dst``.

    Pixels clipped in the input or the target (any channel within ``clip`` of 0 or 1) carry no
    reliable relation between the two and are left out, unless fewer than 1 % of the pixels
    remain. The ridge term pulls ``M`` towards ``prior`` (default: the identity), scaled by
    the number of pixels used (the constant term is penalised 100× less), so a flat keyframe — where
    the ten terms are nearly collinear — shifts the map evenly by what that one colour asks,
    instead of tilting the curves and swinging other colours far.

    Shape:
        src, dst: ``(..., 3)`` float RGB in [0, 1], same number of pixels; returns ``(10, 3)``.
    """
    x = np.asarray(src, np.float64).reshape(-1, 3)
    y = np.asarray(dst, np.float64).reshape(-1, 3)
    if x.shape != y.shape or not len(x):
        raise ValueError(f"fit_map: src and dst need the same non-zero number of pixels, got {x.shape} and {y.shape}")
    m0 = identity_map() if prior is None else check_map(prior, "prior")
    ok = np.isfinite(y).all(1) & np.isfinite(x).all(1)
    lo, hi = clip, 1.0 - clip
    inside = ok & (x > lo).all(1) & (x < hi).all(1) & (y > lo).all(1) & (y < hi).all(1)
    use = inside if inside.sum() >= max(16, len(x) // 100) else ok
    if not use.any():
        return m0.copy()
    phi, y = features(x[use]), y[use]
    n = float(len(phi))
    a = phi.T @ phi + ridge * n * np.diag(_PENALTY)
    rhs = phi.T @ y + ridge * n * _PENALTY[:, None] * m0
    return np.linalg.solve(a, rhs)


def blend_maps(running: np.ndarray, new: np.ndarray, blend: float) -> np.ndarray:
    """``(1 − blend)·running + blend·new`` (``blend`` 1 replaces the running map)."""
    return (1.0 - blend) * np.asarray(running, np.float64) + blend * np.asarray(new, np.float64)


def apply_map_rgb(m: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """The map on float RGB pixels (the reference, float64, clipped to [0, 1]).

    Shape:
        rgb: ``(..., 3)`` in [0, 1]; returns the same shape.
    """
    return np.clip(features(rgb) @ m, 0.0, 1.0).reshape(np.shape(rgb))


class MapApplier:
    """Apply one map to uint8 BGR frames with OpenCV: about 5 OpenCV calls on float32 planes.

    The ten terms are three 3-channel images — ``x``, ``x²`` and ``x·roll(x)`` — each multiplied by
    a 3×3 (or 3×4 with the constant) matrix by ``cv2.transform``. Values are kept in 0..255, the
    coefficients rescaled once here.
    """

    # BGR channel order of the frame: b=0, g=1, r=2. roll(x) for the cross terms is (g, r, b) so the
    # products are (b·g, g·r, r·b) = (gb, rg, rb).
    _ROLL = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], np.float32)  # (b,g,r) → (g,r,b)

    def __init__(self, m: np.ndarray):
        m = check_map(m)
        rgb_to_bgr = [2, 1, 0]
        lin = m[[2, 1, 0]][:, rgb_to_bgr].T                  # out BGR × in BGR
        sq = m[[5, 4, 3]][:, rgb_to_bgr].T / 255.0           # × (b², g², r²)
        cross = m[[7, 6, 8]][:, rgb_to_bgr].T / 255.0        # × (gb, rg, rb)
        const = m[9, rgb_to_bgr] * 255.0 + 0.5               # + 0.5: truncation below rounds
        self.lin = np.hstack([lin, const[:, None]]).astype(np.float32)  # [3, 4]
        self.sq = sq.astype(np.float32)
        self.cross = cross.astype(np.float32)
        self.map = m

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Shape: frame ``(H, W, 3)`` uint8 BGR; returns the same."""
        x = frame.astype(np.float32)
        out = cv2.transform(x, self.lin)
        out += cv2.transform(cv2.multiply(x, x), self.sq)
        out += cv2.transform(cv2.multiply(x, cv2.transform(x, self._ROLL)), self.cross)
        np.clip(out, 0.0, 255.0, out=out)
        return out.astype(np.uint8)


def apply_map(m: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """The map on a uint8 BGR frame (``(H, W, 3)`` → same); see :class:`MapApplier`."""
    return MapApplier(m)(frame)


def terms_torch(x):
    """The nine non-constant terms of :func:`features` on a float RGB tensor: ``[N, 3, H, W]`` → ``[N, 9, H, W]``."""
    import torch

    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return torch.cat([r, g, b, r * r, g * g, b * b, r * g, g * b, r * b], 1)


def apply_map_torch(m, x):
    """The map on a float RGB tensor ``[N, 3, H, W]`` in [0, 1] (any device and float dtype), clamped.

    ``m``: ``(10, 3)``, an array, or a tensor (gradients flow through a tensor map: the unpaired
    quadratic baseline of ``training.learn_bench`` fits one)."""
    import torch

    if isinstance(m, torch.Tensor):
        w = m.to(device=x.device, dtype=torch.float32)
    else:
        w = torch.as_tensor(np.asarray(m, np.float32), device=x.device, dtype=torch.float32)
    terms = terms_torch(x.float())  # [N, 9, H, W]
    y = torch.einsum("nkhw,kc->nchw", terms, w[:9]) + w[9].view(1, 3, 1, 1)
    return y.clamp_(0.0, 1.0).to(x.dtype)
