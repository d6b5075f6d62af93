"""Train a CycleGAN teacher from two unpaired image collections (``stylecam train-teacher``).

A compact, faithful CycleGAN (Zhu et al. 2017): two ``ResnetGenerator`` s and two 70×70 PatchGAN
discriminators, LSGAN losses, cycle (λ = 10) and identity (0.5 λ) losses, Adam (2e-4, β1 = 0.5)
with linear decay over the second half, and a 50-image history pool for the discriminators.
Checkpoints use the pytorch-CycleGAN-and-pix2pix names and key layout (``latest_net_G_A.pth``
…), so ``load_teacher(OUT/latest_net_G_A.pth)`` reads them back; ``--resume`` continues from
``OUT/state.pt``.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from realtime.errors import InputError

from .cyclegan import NLayerDiscriminator, ResnetGenerator
from .data import ImageSet, to_tensor

log = logging.getLogger(__name__)

__all__ = ["TeacherTrainConfig", "train_teacher"]


@dataclass
class TeacherTrainConfig:
    """Settings of a teacher run (saved to ``OUT/config.json``)."""

    domain_a: list[str]
    domain_b: list[str]
    out: str
    steps: int = 20000
    size: int = 256
    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 9
    batch: int = 1
    lr: float = 2e-4
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5
    pool_size: int = 50
    checkpoint_every: int = 1000
    seed: int = 0
    resume: bool = False
    device: str = "auto"
    progress: bool = True
    extra: dict = field(default_factory=dict)


class _ImagePool:
    """History of generated images; the discriminator sees a mix of new and old fakes (Shrivastava et al.)."""

    def __init__(self, size: int):
        self.size, self.images = size, []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for img in images.detach():
            img = img[None]
            if len(self.images) < self.size:
                self.images.append(img)
                out.append(img)
            elif random.random() > 0.5:
                i = random.randrange(self.size)
                out.append(self.images[i].clone())
                self.images[i] = img
            else:
                out.append(img)
        return torch.cat(out)


def _random_crop(images: ImageSet, items, size: int, batch: int, rng: np.random.Generator) -> torch.Tensor:
    """Random ``size×size`` crops (after resizing the short side to 1.12·size) with flips, in [-1, 1].

    Shape:
        returns ``[batch, 3, size, size]``.
    """
    import cv2

    out = []
    for _ in range(batch):
        img = images.load(items[int(rng.integers(0, len(items)))])
        h, w = img.shape[:2]
        s = size * 1.12 / min(h, w)
        img = cv2.resize(img, (max(size, round(w * s)), max(size, round(h * s))), interpolation=cv2.INTER_AREA
                         if s < 1 else cv2.INTER_LINEAR)
        y0 = int(rng.integers(0, img.shape[0] - size + 1))
        x0 = int(rng.integers(0, img.shape[1] - size + 1))
        t = to_tensor(img[y0:y0 + size, x0:x0 + size])
        if rng.random() < 0.5:
            t = t.flip(-1)
        out.append(t * 2 - 1)
    return torch.cat(out)


@dataclass
class _CycleGan:
    """The four networks of a run, their two optimizers and the number of steps taken."""

    g_a: ResnetGenerator  # A → B
    g_b: ResnetGenerator  # B → A
    d_a: NLayerDiscriminator  # judges B-side images
    d_b: NLayerDiscriminator  # judges A-side images
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    step: int = 0

    @classmethod
    def build(cls, cfg: TeacherTrainConfig, device: torch.device) -> _CycleGan:
        g_a = ResnetGenerator(cfg.ngf, cfg.n_blocks).to(device)
        g_b = ResnetGenerator(cfg.ngf, cfg.n_blocks).to(device)
        d_a = NLayerDiscriminator(cfg.ndf).to(device)
        d_b = NLayerDiscriminator(cfg.ndf).to(device)
        for m in (g_a, g_b, d_a, d_b):
            m.apply(_init_normal)
        opt_g = torch.optim.Adam(itertools.chain(g_a.parameters(), g_b.parameters()), cfg.lr, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(itertools.chain(d_a.parameters(), d_b.parameters()), cfg.lr, betas=(0.5, 0.999))
        return cls(g_a, g_b, d_a, d_b, opt_g, opt_d)

    def networks(self) -> tuple[tuple[str, nn.Module], ...]:
        return ("G_A", self.g_a), ("G_B", self.g_b), ("D_A", self.d_a), ("D_B", self.d_b)

    def load(self, state_path: Path) -> None:
        """Continue from ``state.pt``: weights, optimizer moments and the step count."""
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        for name, m in (*self.networks(), ("opt_g", self.opt_g), ("opt_d", self.opt_d)):
            m.load_state_dict(st[name])
        self.step = int(st["step"])

    def save(self, out: Path) -> None:
        """Write the four ``latest_net_*.pth`` and ``state.pt`` (each atomically)."""
        for name, m in self.networks():
            _atomic_save({k: v.detach().cpu() for k, v in m.state_dict().items()}, out / f"latest_net_{name}.pth")
        _atomic_save({"G_A": self.g_a.state_dict(), "G_B": self.g_b.state_dict(), "D_A": self.d_a.state_dict(),
                      "D_B": self.d_b.state_dict(), "opt_g": self.opt_g.state_dict(),
                      "opt_d": self.opt_d.state_dict(), "step": self.step}, out / "state.pt")


def train_teacher(cfg: TeacherTrainConfig) -> Path:
    """Train a CycleGAN on ``cfg.domain_a`` ↔ ``cfg.domain_b``; write checkpoints to ``cfg.out``.

    Returns:
        The output folder (``latest_net_G_A.pth`` maps A → B).

    Raises:
        InputError: bad settings or unusable data.
    """
    if cfg.steps < 1 or cfg.size < 16 or cfg.size % 4 or cfg.batch < 1:
        raise InputError(f"train-teacher: need --steps >= 1, --batch >= 1 and --size a multiple of 4 >= 16 "
                         f"(got {cfg.steps}, {cfg.batch}, {cfg.size})")
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if cfg.device == "auto" else cfg.device))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "state.pt"
    if state_path.exists() and not cfg.resume:
        raise InputError(f"--out {out}: holds an earlier teacher run; pass --resume or choose another --out")
    set_a, set_b = ImageSet(cfg.domain_a), ImageSet(cfg.domain_b)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    gan = _CycleGan.build(cfg, device)
    if cfg.resume and state_path.exists():
        gan.load(state_path)
        log.info("resumed teacher training at step %d", gan.step)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    pools = _ImagePool(cfg.pool_size), _ImagePool(cfg.pool_size)
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=gan.step, desc="train-teacher", dynamic_ncols=True)
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as metrics:
        t0 = time.monotonic()
        try:
            while gan.step < cfg.steps:
                _set_lr(gan, cfg)
                real_a = _random_crop(set_a, set_a.items, cfg.size, cfg.batch, rng).to(device)
                real_b = _random_crop(set_b, set_b.items, cfg.size, cfg.batch, rng).to(device)
                losses = _train_step(gan, cfg, real_a, real_b, pools, device)
                _report_step(gan.step, cfg, losses, metrics, bar, t0)
                if gan.step % cfg.checkpoint_every == 0:
                    gan.save(out)
        finally:
            if bar is not None:
                bar.close()
            gan.save(out)
    return out


def _set_lr(gan: _CycleGan, cfg: TeacherTrainConfig) -> None:
    """Constant learning rate for the first half of the steps, then a linear decay to zero."""
    decay = 1.0 - max(0, gan.step - cfg.steps // 2) / max(1, cfg.steps - cfg.steps // 2)
    for opt in (gan.opt_g, gan.opt_d):
        for g in opt.param_groups:
            g["lr"] = cfg.lr * decay


def _train_step(gan: _CycleGan, cfg: TeacherTrainConfig, real_a: torch.Tensor, real_b: torch.Tensor,
                pools: tuple[_ImagePool, _ImagePool], device: torch.device) -> dict[str, torch.Tensor]:
    """One generator update then one discriminator update; counts the step.

    Shape:
        ``real_a``, ``real_b``: ``[batch, 3, size, size]`` in [-1, 1].

    Returns:
        The losses ``g_gan``, ``cycle``, ``identity`` and ``d``.

    Raises:
        InputError: the generator loss is no longer finite.
    """
    g_a, g_b, d_a, d_b = gan.g_a, gan.g_b, gan.d_a, gan.d_b
    pool_a, pool_b = pools
    mse, l1 = nn.MSELoss(), nn.L1Loss()
    # generators
    for p in itertools.chain(d_a.parameters(), d_b.parameters()):
        p.requires_grad_(False)
    fake_b, fake_a = g_a(real_a), g_b(real_b)
    rec_a, rec_b = g_b(fake_b), g_a(fake_a)
    pa, pb = d_a(fake_b), d_b(fake_a)
    loss_gan = mse(pa, torch.ones_like(pa)) + mse(pb, torch.ones_like(pb))
    loss_cyc = (l1(rec_a, real_a) + l1(rec_b, real_b)) * cfg.lambda_cycle
    loss_idt = (l1(g_a(real_b), real_b) + l1(g_b(real_a), real_a)) * cfg.lambda_cycle * cfg.lambda_identity \
        if cfg.lambda_identity > 0 else torch.zeros((), device=device)
    loss_g = loss_gan + loss_cyc + loss_idt
    gan.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    gan.opt_g.step()
    # discriminators
    for p in itertools.chain(d_a.parameters(), d_b.parameters()):
        p.requires_grad_(True)
    loss_d = 0.0
    for d, real, fake in ((d_a, real_b, pool_b.query(fake_b)), (d_b, real_a, pool_a.query(fake_a))):
        pr, pf = d(real), d(fake.detach())
        loss_d = loss_d + 0.5 * (mse(pr, torch.ones_like(pr)) + mse(pf, torch.zeros_like(pf)))
    gan.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    gan.opt_d.step()
    gan.step += 1
    if not torch.isfinite(loss_g):
        raise InputError(f"train-teacher: the loss became {float(loss_g)} at step {gan.step}; lower --lr")
    return {"g_gan": loss_gan, "cycle": loss_cyc, "identity": loss_idt, "d": loss_d}


def _report_step(step: int, cfg: TeacherTrainConfig, losses: dict[str, torch.Tensor], metrics, bar,
                 t0: float) -> None:
    """A ``metrics.jsonl`` line every 10 steps and at the last one; the progress bar every step."""
    if step % 10 == 0 or step == cfg.steps:
        metrics.write(json.dumps({"step": step, "time_s": round(time.monotonic() - t0, 2),
                                  "g_gan": float(losses["g_gan"]), "cycle": float(losses["cycle"]),
                                  "identity": float(losses["identity"]), "d": float(losses["d"])}) + "\n")
        metrics.flush()
    if bar is not None:
        bar.update(1)
        bar.set_postfix(cyc=f"{float(losses['cycle']):.3f}", d=f"{float(losses['d']):.3f}", refresh=False)


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _init_normal(m: nn.Module) -> None:
    """N(0, 0.02) weights as in the reference implementation."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.InstanceNorm2d) and m.affine:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)
