"""Distillation losses and the image metrics evaluation shares with them.

- :func:`laplacian_loss` — L1 over a Laplacian pyramid (multi-scale structure).
- :func:`ssim` — Gaussian-window SSIM (Wang et al. 2004), used as a metric.
- :func:`random_affine`, :func:`warp` — known synthetic motion; :func:`temporal_loss` asks the
  student's output of a warped input to equal the warped output.
- :class:`PatchDiscriminator` — a conditional PatchGAN with spectral norm (optional adversarial loss).
- :class:`FeatureAdapter` — 1×1 conv mapping student features to a teacher layer's width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def _gauss_kernel(sigma: float, channels: int, device, dtype, radius: int | None = None) -> torch.Tensor:
    radius = radius if radius is not None else max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    g = torch.exp(-(t * t) / (2 * sigma * sigma))
    g = g / g.sum()
    return g[None, None, :].expand(channels, 1, -1).contiguous()


def blur(x: torch.Tensor, sigma: float, radius: int | None = None) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding.

    Shape:
        x: ``[N, C, H, W]``; returns the same shape.
    """
    c = x.shape[1]
    k = _gauss_kernel(sigma, c, x.device, x.dtype, radius)
    r = k.shape[-1] // 2
    mode = "reflect" if min(x.shape[-2:]) > r else "replicate"
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode=mode), k[:, :, None, :], groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode=mode), k[:, :, :, None], groups=c)


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Band-pass levels (finest first) and the low-pass residual.

    Shape:
        x: ``[N, C, H, W]``; level ``i`` is ``[N, C, H/2^i, W/2^i]``.
    """
    out = []
    cur = x
    for _ in range(levels - 1):
        low = blur(cur, 1.0, 2)
        down = low[..., ::2, ::2]
        up = F.interpolate(down, size=cur.shape[-2:], mode="bilinear", align_corners=False)
        out.append(cur - up)
        cur = down
    out.append(cur)
    return out


def laplacian_loss(a: torch.Tensor, b: torch.Tensor, levels: int = 4) -> torch.Tensor:
    """Multi-scale structure loss: L1 between Laplacian pyramids, coarser levels weighted up.

    Shape:
        a, b: ``[N, C, H, W]``; returns a scalar.
    """
    levels = max(1, min(levels, int(math.log2(max(2, min(a.shape[-2:])))) - 2))
    pa, pb = laplacian_pyramid(a, levels), laplacian_pyramid(b, levels)
    return sum((2.0 ** i) * F.l1_loss(x, y) for i, (x, y) in enumerate(zip(pa, pb))) / levels


def ssim(a: torch.Tensor, b: torch.Tensor, sigma: float = 1.5, data_range: float = 1.0,
         reduce: bool = True) -> torch.Tensor:
    """Structural similarity with an 11-tap Gaussian window, averaged over channels and pixels.

    Shape:
        a, b: ``[N, C, H, W]``; returns a scalar (``reduce``) or ``[N]``.
    """
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = blur(a, sigma, 5), blur(b, sigma, 5)
    saa = blur(a * a, sigma, 5) - mu_a ** 2
    sbb = blur(b * b, sigma, 5) - mu_b ** 2
    sab = blur(a * b, sigma, 5) - mu_a * mu_b
    m = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))
    m = m.flatten(1).mean(1)
    return m.mean() if reduce else m


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over the whole batch (inf when equal)."""
    mse = float(F.mse_loss(a.float(), b.float()))
    return float("inf") if mse == 0 else 10.0 * math.log10(data_range ** 2 / mse)


# --------------------------------------------------------------------------------------------
# known motion
# --------------------------------------------------------------------------------------------

def random_affine(n: int, max_rot_deg: float = 4.0, max_zoom: float = 0.06, max_shift: float = 0.06,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Random small affine motions as ``affine_grid`` matrices (normalised coordinates).

    Shape:
        returns ``[n, 2, 3]``.
    """
    r = torch.rand(n, 4, generator=generator) * 2 - 1
    ang = r[:, 0] * math.radians(max_rot_deg)
    zoom = 1 + r[:, 1] * max_zoom
    cos, sin = torch.cos(ang) / zoom, torch.sin(ang) / zoom
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 0, 2] = cos, -sin, r[:, 2] * max_shift * 2
    theta[:, 1, 0], theta[:, 1, 1], theta[:, 1, 2] = sin, cos, r[:, 3] * max_shift * 2
    return theta


def warp(x: torch.Tensor, theta: torch.Tensor, mode: str = "bilinear") -> tuple[torch.Tensor, torch.Tensor]:
    """Warp images by affine matrices; also return where the warped image has valid content.

    ``out(p) = x(theta · p)`` in normalised coordinates (``align_corners=False``).

    Shape:
        x: ``[N, C, H, W]``; theta: ``[N, 2, 3]``; returns ``[N, C, H, W]`` and a ``[N, 1, H, W]`` mask.
    """
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=False)
    # Valid where the source point lies at least one pixel inside (bilinear taps stay in the image).
    h, w = x.shape[-2:]
    mx, my = 1 - 2.0 / w, 1 - 2.0 / h
    valid = ((grid[..., 0].abs() <= mx) & (grid[..., 1].abs() <= my)).to(x.dtype)[:, None]
    return out, valid


def compose_affine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Matrix of ``p ↦ a(b(p))`` for affine_grid matrices.

    Shape:
        a, b: ``[N, 2, 3]``; returns ``[N, 2, 3]``.
    """
    bottom = torch.tensor([0.0, 0.0, 1.0], dtype=a.dtype, device=a.device).expand(a.shape[0], 1, 3)
    return (torch.cat([a, bottom], 1) @ torch.cat([b, bottom], 1))[:, :2]


def invert_affine(a: torch.Tensor) -> torch.Tensor:
    """Inverse of affine_grid matrices. Shape: ``[N, 2, 3]`` → ``[N, 2, 3]``."""
    bottom = torch.tensor([0.0, 0.0, 1.0], dtype=a.dtype, device=a.device).expand(a.shape[0], 1, 3)
    return torch.linalg.inv(torch.cat([a, bottom], 1))[:, :2]


def temporal_loss(out: torch.Tensor, out_warped_input: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Temporal consistency on known motion: ``S(warp(x))`` should equal ``warp(S(x))``.

    Shape:
        out: ``S(x)`` ``[N, 3, H, W]``; out_warped_input: ``S(warp(x, theta))``; theta ``[N, 2, 3]``.
    """
    target, valid = warp(out, theta)
    return ((out_warped_input - target).abs() * valid).sum() / (valid.sum() * out.shape[1]).clamp_min(1.0)


# --------------------------------------------------------------------------------------------
# adversarial and feature losses
# --------------------------------------------------------------------------------------------

class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN (70×70 receptive field at 3 layers) with spectral norm.

    Shape:
        x: input ``[N, 3, H, W]``; y: output to judge ``[N, 3, H, W]``; returns logits ``[N, 1, h, w]``.
    """

    def __init__(self, width: int = 32, layers: int = 3):
        super().__init__()
        mods: list[nn.Module] = [spectral_norm(nn.Conv2d(6, width, 4, 2, 1)), nn.LeakyReLU(0.2)]
        ch = width
        for i in range(1, layers):
            nxt = min(width * 2 ** i, width * 8)
            mods += [spectral_norm(nn.Conv2d(ch, nxt, 4, 2, 1)), nn.LeakyReLU(0.2)]
            ch = nxt
        mods += [spectral_norm(nn.Conv2d(ch, ch, 4, 1, 1)), nn.LeakyReLU(0.2),
                 spectral_norm(nn.Conv2d(ch, 1, 4, 1, 1))]
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x * 2 - 1, y * 2 - 1], 1))


def d_hinge_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge loss for the discriminator (teacher output is "real")."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def g_hinge_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge loss for the student against the discriminator."""
    return -fake_logits.mean()


class FeatureAdapter(nn.Module):
    """1×1 conv from a student feature map to a teacher layer's channels.

    Shape:
        x: ``[N, Cs, h, w]``; returns ``[N, Ct, h, w]``.
    """

    def __init__(self, student_ch: int, teacher_ch: int):
        super().__init__()
        self.proj = nn.Conv2d(student_ch, teacher_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def feature_loss(student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
    """MSE between channel-normalised feature maps (teacher resized to the student's grid).

    Shape:
        student_feat: ``[N, C, h, w]`` (already adapted); teacher_feat: ``[N, C, H', W']``.
    """
    if teacher_feat.shape[-2:] != student_feat.shape[-2:]:
        teacher_feat = F.adaptive_avg_pool2d(teacher_feat, student_feat.shape[-2:])
    return F.mse_loss(F.instance_norm(student_feat), F.instance_norm(teacher_feat))
