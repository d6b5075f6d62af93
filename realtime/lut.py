"""Image-adaptive 3D LUT students: a tiny CNN on a thumbnail mixes K basis LUTs, applied to every pixel.

A photographic look is mostly colour and tone chosen from the picture's content. ``LutNet`` holds,
per style, ``K`` residual basis LUTs on a ``D×D×D`` lattice; a small CNN looks at a 32×32 thumbnail
of the whole frame (plus its channel means and spreads) and predicts the ``K`` mixing weights::

    LUT(x) = identity + Σ_k w_k(thumb(x)) · R_k        # [3, D, D, D], indexed [c, r, g, b]
    y      = trilinear(LUT, x)                          # every full-resolution pixel

Trilinear interpolation is linear in the table, so a blend of styles (cross-fades, mixes, packs)
is the same blend of their LUTs: one table, one apply.

Three applies share one definition:

* :func:`apply_lut` — differentiable torch trilinear (training, the device path, the reference's twin);
* :func:`apply_lut_reference` — SciPy's ``RegularGridInterpolator``, an independent reference for tests;
* :class:`LutTable` — the live CPU path on uint8 BGR frames: the LUT's *change* ``LUT(c) − c`` sampled
  at the centres of a 64³ grid of 4-level cells, gathered per pixel and added with saturation. Storing
  the change (not the output) keeps an identity LUT exact and bounds the error by
  ``2 · |slope − 1|`` levels (measured below 1 level on average for learned looks).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LutSpec:
    """What a LUT registry name means: lattice size and number of basis LUTs."""

    dim: int
    bases: int
    description: str


LUT_REGISTRY: dict[str, LutSpec] = {
    "lut3d-17": LutSpec(17, 3, "image-adaptive 3D LUT: 3 basis LUTs on a 17³ lattice, mixed by a thumbnail CNN"),
    "lut3d-33": LutSpec(33, 3, "image-adaptive 3D LUT: 3 basis LUTs on a 33³ lattice, mixed by a thumbnail CNN"),
}
DEFAULT_LUT_ARCH = "lut3d-17"
#: how the thumbnail CNN's outputs mix the basis LUTs: ``linear`` (any weights, Zeng et al.) or ``convex``
#: (a softmax: every frame's LUT is a blend of the learned ones, so a frame unlike any training photo — a
#: dark, noisy night scene — cannot extrapolate to an extreme table).
LUT_MIXES = ("linear", "convex")
THUMB = (32, 32)  # (w, h) the weight predictor sees: the whole frame, squashed


def is_lut_arch(arch: str) -> bool:
    return arch in LUT_REGISTRY


def identity_lut(dim: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[3, D, D, D]`` with ``lut[c, r, g, b]`` = the lattice point's channel ``c`` value."""
    g = torch.linspace(0.0, 1.0, dim, dtype=dtype)
    r, gg, b = torch.meshgrid(g, g, g, indexing="ij")
    return torch.stack([r, gg, b])


def apply_lut(lut: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Trilinear lookup of every pixel of ``x`` in its LUT (differentiable in both).

    Shape:
        lut: ``[N, 3, D, D, D]`` (or ``[3, D, D, D]`` for the whole batch), indexed ``[c, r, g, b]``;
        x: ``[N, 3, H, W]`` RGB in [0, 1] (values outside are clamped); output: ``[N, 3, H, W]``.
    """
    n, _, h, w = x.shape
    if lut.dim() == 4:
        lut = lut.unsqueeze(0).expand(n, -1, -1, -1, -1)
    # grid_sample's (x, y, z) index (W, H, D) = (b, g, r) of the table; align_corners puts 0 and 1 on
    # the end lattice points, and border padding clamps values outside [0, 1] to the cube's faces.
    grid = (x.clamp(0.0, 1.0) * 2 - 1).flip(1).permute(0, 2, 3, 1).unsqueeze(1)  # [N, 1, H, W, 3]
    out = F.grid_sample(lut, grid.to(lut.dtype), mode="bilinear", padding_mode="border", align_corners=True)
    return out[:, :, 0]  # [N, 3, H, W]


def apply_lut_reference(lut: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """SciPy reference: ``lut [3, D, D, D]`` float, ``rgb (..., 3)`` in [0, 1] → ``(..., 3)``."""
    from scipy.interpolate import RegularGridInterpolator

    d = lut.shape[-1]
    g = np.linspace(0.0, 1.0, d)
    pts = np.clip(rgb.reshape(-1, 3).astype(np.float64), 0.0, 1.0)
    out = [RegularGridInterpolator((g, g, g), lut[c].astype(np.float64), method="linear")(pts) for c in range(3)]
    return np.stack(out, -1).reshape(rgb.shape)


class LutNet(nn.Module):
    """Thumbnail CNN → weights over K residual basis LUTs per style → trilinear apply.

    Shape:
        x: ``[N, 3, H, W]`` RGB in [0, 1]; style_w: ``[N, S]`` (rows sum to 1); output like ``x``.
    """

    def __init__(self, arch: str = DEFAULT_LUT_ARCH, width: int = 16, num_styles: int = 1, mix: str = "linear"):
        super().__init__()
        if arch not in LUT_REGISTRY:
            raise ValueError(f"unknown LUT architecture {arch!r}; expected one of {sorted(LUT_REGISTRY)}")
        if mix not in LUT_MIXES:
            raise ValueError(f"architecture.mix {mix!r}: expected one of {', '.join(LUT_MIXES)}")
        self.mix = mix
        if width < 4 or num_styles < 1:
            raise ValueError(f"LUT width must be >= 4 and num_styles >= 1, got {width}, {num_styles}")
        spec = LUT_REGISTRY[arch]
        self.arch, self.width, self.num_styles = arch, width, num_styles
        self.dim, self.bases = spec.dim, spec.bases
        w, k, s = width, spec.bases, num_styles
        # 32² → 16² → 8² → 4² → 2²; no normalisation: the absolute level and tint are what a look reads.
        self.trunk = nn.Sequential(
            nn.Conv2d(3, w, 3, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 3, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 4 * w, 3, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(4 * w, 4 * w, 3, 2, 1), nn.LeakyReLU(0.2),
        )
        feat = 4 * w + 6
        self.head_w = nn.Parameter(torch.randn(s, k, feat) * 0.01)  # [S, K, F] per-style weight heads
        self.head_b = nn.Parameter(torch.zeros(s, k))
        with torch.no_grad():
            self.head_b[:, 0] = 1.0
        self.basis = nn.Parameter(torch.zeros(s, k, 3, self.dim, self.dim, self.dim))  # residuals on identity
        self.register_buffer("ident", identity_lut(self.dim), persistent=False)

    def thumbnail(self, x: torch.Tensor) -> torch.Tensor:
        """The ``[N, 3, 32, 32]`` whole-frame view the weights are predicted from."""
        return F.interpolate(x, size=(THUMB[1], THUMB[0]), mode="area")

    def weights(self, thumb: torch.Tensor, style_w: torch.Tensor) -> torch.Tensor:
        """Mixing weights ``[N, S, K]`` from a ``[N, 3, 32, 32]`` thumbnail."""
        mean = thumb.mean((2, 3))
        spread = (thumb * thumb).mean((2, 3)).sub(mean * mean).clamp_min(1e-8).sqrt()
        f = torch.cat([self.trunk(thumb * 2 - 1).mean((2, 3)), mean, spread], 1)  # [N, F]
        w = torch.einsum("skf,nf->nsk", self.head_w, f) + self.head_b  # [N, S, K]
        return w.softmax(-1) if self.mix == "convex" else w

    def lut_from_weights(self, wk: torch.Tensor, style_w: torch.Tensor) -> torch.Tensor:
        """``[N, 3, D, D, D]`` LUT for weights ``[N, S, K]`` and a style mix ``[N, S]``."""
        sk = wk * style_w.to(wk.dtype)[:, :, None]  # [N, S, K]
        res = torch.einsum("nsk,skcxyz->ncxyz", sk, self.basis)
        return self.ident.to(res.dtype) + res

    def lut(self, x: torch.Tensor, style_w: torch.Tensor) -> torch.Tensor:
        """The LUT this picture gets: ``[N, 3, D, D, D]``."""
        return self.lut_from_weights(self.weights(self.thumbnail(x), style_w), style_w)

    def forward(self, x: torch.Tensor, style_w: torch.Tensor) -> torch.Tensor:
        return apply_lut(self.lut(x, style_w), x)

    def config(self) -> dict:
        c = {"arch": self.arch, "width": self.width, "num_styles": self.num_styles}
        return c if self.mix == "linear" else {**c, "mix": self.mix}


def lut_smoothness(net: LutNet) -> torch.Tensor:
    """Mean squared difference of neighbouring lattice entries of every residual basis LUT (total variation)."""
    b = net.basis
    return sum(b.diff(dim=ax).square().mean() for ax in (3, 4, 5)) / 3


def lut_monotonicity(lut: torch.Tensor) -> torch.Tensor:
    """How much channel ``c`` of ``lut [N, 3, D, D, D]`` *decreases* along its own axis (0 when monotone)."""
    return sum(F.relu(-lut[:, c].diff(dim=1 + c)).mean() for c in range(3)) / 3


# --------------------------------------------------------------------------------------------
# The live CPU apply on uint8 frames.

CELLS = 64  # cells per axis of the quantised table; 4 input levels each


def _centre_weights(dim: int) -> np.ndarray:
    """``[CELLS, D]`` linear-interpolation weights of each cell's centre on a D-point lattice."""
    c = (np.arange(CELLS) * 4 + 1.5) / 255.0 * (dim - 1)
    i0 = np.clip(np.floor(c).astype(int), 0, dim - 2)
    f = c - i0
    m = np.zeros((CELLS, dim), np.float32)
    m[np.arange(CELLS), i0] = 1 - f
    m[np.arange(CELLS), i0 + 1] = f
    return m


_CENTRE_CACHE: dict[int, np.ndarray] = {}


def _centres() -> np.ndarray:
    """The input value at the centre of each cell, in [0, 1]."""
    return ((np.arange(CELLS) * 4 + 1.5) / 255.0).astype(np.float32)


class LutTable:
    """A LUT quantised for uint8 BGR frames: ``apply(frame)`` is one gather and one saturating add.

    Resampling a lattice at the points of another lattice is separable (trilinear = linear along each
    axis in turn), so the 64³ table is three small matrix products, not 262,144 lookups.
    """

    def __init__(self, lut: np.ndarray):
        """``lut``: ``[3, D, D, D]`` float32 RGB, indexed ``[c, r, g, b]``."""
        d = lut.shape[-1]
        m = _CENTRE_CACHE.get(d)
        if m is None:
            m = _CENTRE_CACHE[d] = _centre_weights(d)
        # [3, D, D, D] → [3, 64, 64, 64]: linear along b, then g, then r (plain matmuls on contiguous data)
        t = np.ascontiguousarray(lut, np.float32) @ m.T  # [3, Dr, Dg, 64b]
        t = np.matmul(m, t)  # [3, Dr, 64g, 64b]
        t = t.reshape(3, d, CELLS * CELLS)
        # One 2-D product per channel, single-threaded (einsum's own loop, ~0.4 ms each): in a process that
        # also runs torch and MediaPipe, a threaded BLAS or OpenCV gemm this small waits for its threads on a
        # busy CPU (8-50 ms a call, measured).
        t = np.stack([np.einsum("ij,jk->ik", m, t[c]) for c in range(3)]).reshape(3, CELLS, CELLS, CELLS)
        c = _centres()
        # BGR change in levels, as int16, one 4×int16 word per cell so a single uint64 gather fetches it.
        packed = np.zeros((CELLS, CELLS, CELLS, 4), np.int16)
        packed[..., 0] = np.rint((t[2] - c[None, None, :]) * 255.0)
        packed[..., 1] = np.rint((t[1] - c[None, :, None]) * 255.0)
        packed[..., 2] = np.rint((t[0] - c[:, None, None]) * 255.0)
        self.table = packed.view(np.uint64).ravel()

    def change(self, frame: np.ndarray) -> np.ndarray:
        """``(H, W, 4)`` int16 BGR_ change of a uint8 BGR frame (4th channel 0)."""
        q = frame >> 2
        idx = (q[..., 2].astype(np.int32) << 12) | (q[..., 1].astype(np.int32) << 6) | q[..., 0]
        return np.take(self.table, idx).view(np.int16).reshape(*frame.shape[:2], 4)

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """uint8 BGR ``(H, W, 3)`` → uint8 BGR with the LUT applied."""
        d = self.change(frame)
        bgra = cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA)
        return cv2.cvtColor(cv2.add(bgra, d, dtype=cv2.CV_8U), cv2.COLOR_BGRA2BGR)
