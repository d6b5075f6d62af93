"""Student generators: small encoder–residual–decoder networks with conditional instance norm.

One network holds a bank of per-style ``(gamma, beta)`` rows. A forward pass takes a
style-weight matrix ``[N, S]``: a one-hot row selects a style, a soft row blends styles
(cross-fades, style mixes). Networks are built by registry name and width so a style pack
can say what it holds::

    net = build_student("cin-unet-sc", width=16, num_styles=12)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from kernels.reference import norm_rows


# Module-level hook so a backend (e.g. the fused Triton kernel on CUDA) can replace the op
# for every CondInstanceNorm without the network knowing about it.
_norm_impl: Callable[..., torch.Tensor] = norm_rows


def set_norm_impl(fn: Callable[..., torch.Tensor] | None) -> None:
    """Install ``fn(x, gamma, beta, act, residual, eps)`` as the norm op (``None`` = reference)."""
    global _norm_impl
    _norm_impl = fn or norm_rows


class CondInstanceNorm(nn.Module):
    """Instance norm whose affine parameters come from a bank of per-style rows.

    Shape:
        x: ``[N, C, H, W]``; style_w: ``[N, S]`` (rows sum to 1); output like ``x``.
    """

    def __init__(self, channels: int, num_styles: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(num_styles, channels))  # [S, C]
        self.beta = nn.Parameter(torch.zeros(num_styles, channels))  # [S, C]

    def forward(self, x: torch.Tensor, style_w: torch.Tensor, act: str | None = None,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        gamma = style_w.to(self.gamma.dtype) @ self.gamma  # [N, C]
        beta = style_w.to(self.beta.dtype) @ self.beta
        return _norm_impl(x, gamma.to(x.dtype), beta.to(x.dtype), act, residual, self.eps)


class ConvCIN(nn.Module):
    """Conv (dense or depthwise-separable) followed by conditional instance norm."""

    def __init__(self, cin: int, cout: int, num_styles: int, k: int = 3, stride: int = 1,
                 separable: bool = False):
        super().__init__()
        pad = k // 2
        if separable:
            self.conv = nn.Sequential(
                nn.Conv2d(cin, cin, k, stride, pad, groups=cin, bias=False, padding_mode="reflect"),
                nn.Conv2d(cin, cout, 1, bias=False),
            )
        else:
            self.conv = nn.Conv2d(cin, cout, k, stride, pad, bias=False, padding_mode="reflect")
        self.norm = CondInstanceNorm(cout, num_styles)

    def forward(self, x, style_w, act: str | None = "relu", residual=None):
        return self.norm(self.conv(x), style_w, act=act, residual=residual)


class ResBlock(nn.Module):
    def __init__(self, ch: int, num_styles: int, separable: bool):
        super().__init__()
        self.a = ConvCIN(ch, ch, num_styles, separable=separable)
        self.b = ConvCIN(ch, ch, num_styles, separable=separable)

    def forward(self, x, style_w):
        return self.b(self.a(x, style_w), style_w, act=None, residual=x)


@dataclass(frozen=True)
class StudentSpec:
    """What a registry name means: residual blocks and whether their convs are separable."""

    blocks: int
    separable: bool
    description: str
    colour: bool = False  # sees absolute colour: a per-style 3×4 colour map and image statistics
    skip: bool = False  # the half-scale encoder features are added back in the decoder (U-Net style)
    context: bool = False  # the image statistics steer the decoder after its norm, not the first features


REGISTRY: dict[str, StudentSpec] = {
    "cin-resnet-xs": StudentSpec(3, True, "3 separable residual blocks; fastest"),
    "cin-resnet-s": StudentSpec(4, True, "4 separable residual blocks"),
    "cin-resnet-sc": StudentSpec(4, True, "cin-resnet-s plus absolute-colour paths", colour=True),
    "cin-unet-sc": StudentSpec(4, True, "cin-resnet-sc plus a half-scale skip path for fine detail and a "
                               "global-context path for image-dependent tone", colour=True, skip=True, context=True),
    "cin-resnet-d2": StudentSpec(2, False, "2 dense residual blocks"),
    "cin-resnet-m": StudentSpec(5, False, "5 dense residual blocks; GPU quality"),
}

DEFAULT_ARCH = "cin-unet-sc"
"""The architecture new students get unless told otherwise (the live default)."""


class StudentNet(nn.Module):
    """Space-to-depth encoder → residual blocks at 1/4 scale → depth-to-space decoder, CIN throughout.

    The input is folded 2×2 into channels (``pixel_unshuffle``) so no conv runs at full
    resolution — the costly part of classic style networks on a CPU. The output is the input
    plus a learned, bounded change, so colour-grade styles keep detail for free; the change is
    smooth enough to be computed at a reduced internal resolution and upsampled.

    Shape:
        x: ``[N, 3, H, W]`` float RGB in [0, 1] (any H, W; padded to multiples of 4 inside);
        style_w: ``[N, S]``; output: ``[N, 3, H, W]`` in [0, 1].
    """

    def __init__(self, arch: str = DEFAULT_ARCH, width: int = 16, num_styles: int = 1):
        super().__init__()
        if arch not in REGISTRY:
            raise ValueError(f"unknown student architecture {arch!r}; expected one of {sorted(REGISTRY)}")
        if width < 4 or num_styles < 1:
            raise ValueError(f"student width must be >= 4 and num_styles >= 1, got {width}, {num_styles}")
        spec = REGISTRY[arch]
        self.arch, self.width, self.num_styles = arch, width, num_styles
        w, s, sep = width, num_styles, spec.separable
        self.enc1 = ConvCIN(12, 2 * w, s)  # on the 2×2-folded input, H/2
        self.enc2 = ConvCIN(2 * w, 4 * w, s, stride=2)  # H/4
        self.blocks = nn.ModuleList(ResBlock(4 * w, s, sep) for _ in range(spec.blocks))
        self.dec1 = ConvCIN(4 * w, 2 * w, s, separable=sep)  # after ×2 upsample, H/2
        self.head = nn.Conv2d(2 * w, 12, 3, 1, 1, padding_mode="reflect")  # unfolded to [3, H, W]
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.colour, self.skip, self.context = spec.colour, spec.skip, spec.context
        if spec.colour:
            # Instance norm discards a picture's overall level and tint, which is most of a colour
            # grade. These two paths give it back: a per-style affine map of the raw input added to
            # the change, and the image's channel means and spreads fed into the features — into the
            # first ones, or (``context``) after the decoder's norm, where no later norm can erase them,
            # so the tone can depend on the whole picture. Only these smooth statistics go in: pooled
            # deep features would name the few training pictures and let the student memorise them.
            self.colour_map = nn.Parameter(torch.zeros(s, 12))  # [S, 3×4]
            self.stats = nn.Linear(6, 2 * w)
            nn.init.zeros_(self.stats.weight)
            nn.init.zeros_(self.stats.bias)

    def delta(self, x: torch.Tensor, style_w: torch.Tensor) -> torch.Tensor:
        """The bounded change the style makes, ``[N, 3, H, W]`` in (-1, 1) (``x`` padded to ×4)."""
        f = self.enc1(F.pixel_unshuffle(x, 2), style_w)  # [N, 2w, H/2, W/2]
        stats = None
        if self.colour:
            mean = x.mean((2, 3))  # [N, 3]
            spread = (x * x).mean((2, 3)).sub(mean * mean).clamp_min(1e-8).sqrt()
            stats = torch.cat([mean, spread], 1)  # [N, 6]
            if not self.context:
                f = f + self.stats(stats)[:, :, None, None]
        f1 = f if self.skip else None
        f = self.enc2(f, style_w)  # [N, 4w, H/4, W/4]
        for blk in self.blocks:
            f = blk(f, style_w)
        # [N, 2w, H/2, W/2]; with the skip path the half-scale encoder features come back here, so
        # detail the quarter-scale trunk cannot hold (sharpening, grain, fine edges) reaches the head.
        f = self.dec1(F.interpolate(f, scale_factor=2.0, mode="nearest"), style_w, residual=f1)
        if self.context:
            f = f + self.stats(stats)[:, :, None, None]
        d = F.pixel_shuffle(self.head(f), 2)  # [N, 3, H, W]
        if self.colour:
            m = (style_w.to(self.colour_map.dtype) @ self.colour_map).to(x.dtype).view(-1, 3, 4)  # [N, 3, 4]
            d = d + torch.einsum("nij,njhw->nihw", m[:, :, :3], x) + m[:, :, 3, None, None]
        return torch.tanh(d)

    def forward(self, x: torch.Tensor, style_w: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % 4, (-w) % 4
        xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x
        y = (xp + self.delta(xp, style_w)).clamp(0.0, 1.0)
        return y[:, :, :h, :w] if (ph or pw) else y

    def config(self) -> dict:
        return {"arch": self.arch, "width": self.width, "num_styles": self.num_styles}


def is_style_bank(key: str) -> bool:
    """Whether state-dict entry ``key`` holds one row per style (``[S, ...]``): the CIN ``gamma``/``beta``
    banks and the per-style colour map. Everything else is shared by all styles of a network."""
    return key.endswith((".gamma", ".beta")) or key == "colour_map"


def build_student(arch: str = DEFAULT_ARCH, width: int = 16, num_styles: int = 1, mix: str = "linear") -> nn.Module:
    """Build a student by registry name: a CIN generator (:data:`REGISTRY`) or an image-adaptive
    3D LUT model (``realtime.lut.LUT_REGISTRY``, mixing its basis LUTs by ``mix``); both take
    ``(x [N,3,H,W], style_w [N,S])``."""
    from .lut import LutNet, is_lut_arch

    if is_lut_arch(arch):
        return LutNet(arch, width, num_styles, mix)
    return StudentNet(arch, width, num_styles)


def architectures() -> list[str]:
    """Every registry name a pack may name: the CIN students and the LUT models."""
    from .lut import LUT_REGISTRY

    return sorted([*REGISTRY, *LUT_REGISTRY])


def style_weights(index_or_weights, num_styles: int, batch: int = 1,
                  device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Turn a style index or a weight vector into a ``[batch, S]`` matrix of normalised weights."""
    w = torch.zeros(num_styles, dtype=dtype)
    if isinstance(index_or_weights, int):
        if not 0 <= index_or_weights < num_styles:
            raise ValueError(f"style index {index_or_weights} out of range 0..{num_styles - 1}")
        w[index_or_weights] = 1.0
    else:
        vals = torch.as_tensor(list(index_or_weights), dtype=dtype)
        if vals.numel() != num_styles or (vals < 0).any() or float(vals.sum()) <= 0:
            raise ValueError(f"style weights must be {num_styles} non-negative numbers with a positive sum")
        w = vals / vals.sum()
    return w.expand(batch, num_styles).to(device).contiguous()


def count_macs(net: nn.Module, height: int, width: int) -> int:
    """Multiply–accumulates of one forward pass on a ``[1, 3, height, width]`` input (convs only)."""
    macs = 0

    def hook(mod: nn.Conv2d, _inp, out):
        nonlocal macs
        k = mod.kernel_size[0] * mod.kernel_size[1]
        macs += out.numel() // out.shape[0] * (mod.in_channels // mod.groups) * k

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        p = next(net.parameters())
        s = getattr(net, "num_styles", 1)
        with torch.no_grad():
            net(torch.zeros(1, 3, height, width, device=p.device, dtype=p.dtype),
                style_weights(0, s, device=p.device, dtype=p.dtype))
    finally:
        for h in handles:
            h.remove()
    return macs
