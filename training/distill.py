"""Distil a student (one CIN row per style) from one or more teachers into a style pack.

``distill(config)`` trains and writes ``config.out`` as a style pack the live pipeline loads, with
the run's files beside it::

    OUT/
      model.safetensors, pack.json, previews/<id>.jpg      # the style pack
      run/config.json        # the resolved configuration
      run/metrics.jsonl      # one JSON object per logged step and per evaluation
      run/checkpoint.pt      # student, EMA, optimiser, schedule, RNG; --resume continues from it
      run/samples/step_N.jpg # input | teacher | student on held-out frames, at each evaluation
      run/cache/<key>/       # views and teacher outputs (reused by --resume and identical runs)

Scale (see :mod:`training.data`): the student learns at the live internal resolution
(``frame_width`` px wide frames, default 320 for a 640×480 camera); the teacher sees each view at
``teacher_scale``× that (default 2: a 640×480 frame) and its output is area-resized down.

Teacher cost: the cache starts with ``initial_views`` views and then grows by one view between
training steps whenever the teacher has used less than ``teacher_share`` (default 40 %) of the
wall time so far, so a slow teacher (a CycleGAN takes seconds per view on a CPU) never starves
the student; with ``--resume`` or an identical run the cached views are reused.

Losses: L1 + Laplacian-pyramid structure against the teacher; temporal consistency on synthetic
known motion (``S(warp(x)) ≈ warp(S(x))``, which makes students steadier than their teachers);
optionally a conditional PatchGAN with spectral norm and feature matching through 1×1 adapters
(PyTorch teachers). AdamW with warm-up and cosine decay; EMA weights are what gets exported.

Under ``torchrun --nproc_per_node=N`` the student is wrapped in DistributedDataParallel (gloo on
CPU, NCCL on CUDA); rank 0 fills the teacher cache, writes checkpoints, logs and the pack.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from realtime.errors import InputError
from realtime.student import DEFAULT_ARCH, REGISTRY, StudentNet, build_student
from realtime.styles import save_pack

from .data import ImageSet, ViewCache, ViewSpec, make_view, to_uint8
from .distributed import barrier, dist_info, local_cuda_device, maybe_init_dist, max_over_ranks
from .evaluate import EvalSet, build_eval_set, image_metrics, speed_metrics, student_outputs, teacher_outputs
from .losses import (FeatureAdapter, PatchDiscriminator, d_hinge_loss, feature_loss, g_hinge_loss,
                     laplacian_loss, random_affine, temporal_loss, warp)
from .teachers import Teacher, load_teacher

log = logging.getLogger(__name__)

__all__ = ["StyleSpec", "DistillConfig", "distill", "parse_style_arg", "DistillError", "CheckpointMismatch"]


class DistillError(InputError):
    """A distillation setting is invalid or the run cannot continue."""


class CheckpointMismatch(DistillError):
    """``--resume`` found a checkpoint whose weights do not fit the student being trained."""


@dataclass
class StyleSpec:
    """One style row: which teacher (and teacher options) it learns.

    Attributes:
        id: style id in the pack (also the preview file name).
        name: display name.
        teacher: path of the teacher file (defaults to the run's ``--teacher``).
        options: :func:`training.teachers.load_teacher` options (``inputs`` for extra ONNX inputs).
        license: the teacher's licence (copied into the pack).
        source: where the teacher came from.
    """

    id: str
    name: str = ""
    teacher: str = ""
    options: dict = field(default_factory=dict)
    license: str = ""
    source: str = ""


@dataclass
class DistillConfig:
    """Everything a run needs; saved resolved to ``run/config.json``."""

    out: str
    data: list[str]
    styles: list[StyleSpec]
    held_out: list[str] = field(default_factory=list)  # evaluation pictures; default: a split of ``data``
    pack_name: str = ""
    description: str = ""
    license: str = ""
    arch: str = DEFAULT_ARCH
    width: int = 16
    steps: int | None = None
    minutes: float | None = None
    batch: int = 8
    crop: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    ema: float = 0.998
    frame_width: int = 320
    view_width: int = 192
    view_height: int = 144
    teacher_scale: float = 2.0
    scale_jitter: float = 0.5
    noise: float = 0.02
    color_jitter: float = 0.1
    gray: float = 0.0
    tone: float = 0.0
    collage: float = 0.0
    teacher_precision: str = "fp32"  # of the training targets; evaluation always runs the teacher in fp32
    precision: str = "auto"  # student training: auto, fp32, bf16 or fp16 (CUDA); see _train_dtype
    cache_views: int = 384
    initial_views: int = 16
    teacher_share: float = 0.4  # at most this fraction of the wall time goes to growing the cache
    w_l1: float = 1.0
    w_structure: float = 1.0
    w_temporal: float = 1.0
    w_adv: float = 0.0
    w_feature: float = 0.0
    eval_every: int = 250
    eval_frames: int = 4
    eval_clips: int = 2
    clip_len: int = 6
    checkpoint_every_s: float = 120.0
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    resume: bool = False
    progress: bool = True
    cache_dir: str = ""

    def resolved(self) -> dict:
        d = dataclasses.asdict(self)
        d["resolution"] = list(self.resolution)
        return d

    @property
    def resolution(self) -> tuple[int, int]:
        """(w, h) the student is meant to run at: a 4:3 frame ``frame_width`` wide."""
        w = int(round(self.frame_width / 4)) * 4
        return w, int(round(w * 3 / 4 / 4)) * 4


def parse_style_arg(text: str, default_teacher: str = "", base_options: dict | None = None) -> StyleSpec:
    """Parse ``--style ID[:KEY=VALUE,...]``.

    Keys: ``name``, ``teacher`` (a path), ``license``, ``source``, teacher options (``range``,
    ``layout``, ``fixed``, ``scale``, ``norm``, ``decoder``, ``key``, ``pad_multiple``) and
    ``input.NAME`` for an extra ONNX input (``input.style_weights=onehot:7``). A comma followed by
    text without ``=`` continues the previous value, so ``range=-1,1`` works.

    Raises:
        DistillError: empty id or an unknown key.
    """
    from .teachers import TEACHER_OPTIONS

    sid, _, rest = text.partition(":")
    sid = sid.strip()
    if not sid or not all(c.isalnum() or c in "-_." for c in sid):
        raise DistillError(f"--style {text!r}: expected ID[:KEY=VALUE,...] with an id of letters, digits, - _ .")
    spec = StyleSpec(id=sid, name=sid.replace("-", " ").replace("_", " ").title(), teacher=default_teacher,
                     options=copy.deepcopy(base_options or {}))
    pairs: list[list[str]] = []
    for tok in rest.split(",") if rest else []:
        if "=" in tok:
            pairs.append(tok.split("=", 1))
        elif pairs:
            pairs[-1][1] += "," + tok
        elif tok.strip():
            raise DistillError(f"--style {text!r}: {tok!r} is not KEY=VALUE")
    for k, v in pairs:
        k = k.strip()
        if k in ("name", "teacher", "license", "source"):
            setattr(spec, k, v)
        elif k.startswith("input."):
            spec.options.setdefault("inputs", {})[k[6:]] = v
        elif k in TEACHER_OPTIONS and k not in ("inputs", "device"):
            spec.options[k] = v
        else:
            raise DistillError(f"--style {sid}: unknown key {k!r} (use name, teacher, license, source, "
                               f"input.NAME or one of {', '.join(o for o in TEACHER_OPTIONS if o not in ('inputs', 'device'))})")
    if not spec.teacher:
        raise DistillError(f"--style {sid}: no teacher (give --teacher PATH or teacher=PATH)")
    return spec


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def _pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DistillError("--device cuda: CUDA is not available (use --device cpu)")
        if name == "cuda":
            return local_cuda_device()
    return torch.device(name)


def _lr_factor(progress: float, step: int, warmup: int) -> float:
    warm = min(1.0, (step + 1) / max(1, warmup))
    return warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class _StudentWithFeatures(nn.Module):
    """Student + optional adapters: returns the output and the trunk features through each adapter.

    The adapters live in this module so DistributedDataParallel sees every trained parameter.
    """

    def __init__(self, net: StudentNet, adapters: nn.ModuleList | None):
        super().__init__()
        self.net, self.adapters = net, adapters

    def forward(self, x: torch.Tensor, sw: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats: list[torch.Tensor] = []
        if self.adapters is None:
            return self.net(x, sw), feats
        handle = self.net.blocks[-1].register_forward_hook(lambda m, i, o: feats.append(o))
        try:
            y = self.net(x, sw)
        finally:
            handle.remove()
        return y, [a(feats[0]) for a in self.adapters]


def _grid(rows: list[list[np.ndarray]]) -> np.ndarray:
    return np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)


def _save_jpg(path: Path, rgb: np.ndarray, quality: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if ok:
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(buf.tobytes())
        tmp.replace(path)


def _train_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of student training, or ``None`` for plain fp32.

    ``auto``: fp16 with loss scaling on CUDA, fp32 elsewhere. ``bf16`` on a CPU with AVX-512 BF16 makes
    a width-16 student's steps about 1.6× faster, but at equal steps the film student scored lower
    (fidelity_gain 0.13 against 0.22 after 600 steps), so it is opt-in. The losses always run in fp32.
    """
    if precision == "fp32":
        return None
    if precision == "fp16":
        if device.type != "cuda":
            raise DistillError("--precision fp16 needs a CUDA device (use bf16 or fp32 on a CPU)")
        return torch.float16
    if precision == "bf16":
        return torch.bfloat16
    return torch.float16 if device.type == "cuda" else None


def _load_teachers(cfg: DistillConfig, device: torch.device) -> list[Teacher]:
    loaded: dict[str, Teacher] = {}
    out = []
    for st in cfg.styles:
        opts = dict(st.options)
        key = json.dumps([str(Path(st.teacher)), opts], sort_keys=True)
        if key not in loaded:
            loaded[key] = load_teacher(st.teacher, **opts, device=str(device))
        out.append(loaded[key])
    return out


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------

def distill(cfg: DistillConfig) -> Path:
    """Train a student on ``cfg`` and write the style pack to ``cfg.out``.

    Returns:
        The pack directory.

    Raises:
        DistillError / TeacherError / DataError: bad settings, teachers or data (one-line messages).
    """
    _validate(cfg)
    device = _pick_device(cfg.device)
    own_pg = maybe_init_dist(device)
    out = Path(cfg.out)
    created = [d for d in (out / "run", out) if not d.exists()]  # innermost first
    try:
        return _run(cfg, device)
    except BaseException:
        # A run refused before it wrote anything (a bad teacher or data folder) leaves no empty folders behind.
        for d in created:
            with contextlib.suppress(OSError):
                d.rmdir()  # only if still empty
        raise
    finally:
        if own_pg and dist.is_initialized():
            dist.destroy_process_group()


def _validate(cfg: DistillConfig) -> None:
    if not cfg.styles:
        raise DistillError("no styles: give --teacher PATH (and optionally --style ID:...)")
    ids = [s.id for s in cfg.styles]
    if len(set(ids)) != len(ids):
        raise DistillError(f"--style ids must be unique, got {ids}")
    if cfg.arch not in REGISTRY:
        raise DistillError(f"--arch {cfg.arch!r}: expected one of {sorted(REGISTRY)}")
    if cfg.width < 4:
        raise DistillError(f"--width {cfg.width}: must be at least 4")
    if (cfg.steps is None) == (cfg.minutes is None):
        raise DistillError("give exactly one of --steps N or --minutes M")
    if (cfg.steps is not None and cfg.steps < 1) or (cfg.minutes is not None and cfg.minutes <= 0):
        raise DistillError("--steps / --minutes must be positive")
    if cfg.batch < 1 or (cfg.crop and cfg.crop < 16) or cfg.crop < 0:
        raise DistillError(f"--batch must be >= 1 and --crop 0 (whole views) or >= 16 (got {cfg.batch}, {cfg.crop})")
    if cfg.view_width % 4 or cfg.view_height % 4 or cfg.crop % 4:
        raise DistillError(f"--view {cfg.view_width}x{cfg.view_height} and --crop {cfg.crop} must be multiples of 4")
    if cfg.crop > min(cfg.view_width, cfg.view_height):
        raise DistillError(f"--crop {cfg.crop} exceeds the view size {cfg.view_width}x{cfg.view_height} "
                           f"(--crop 0 trains on whole views)")
    if not 0 <= cfg.gray <= 1:
        raise DistillError(f"--gray {cfg.gray}: expected a probability in 0..1")
    if not 0 <= cfg.tone <= 2:
        raise DistillError(f"--tone {cfg.tone}: expected 0..2 (log2 range of gamma and white-balance jitter)")
    if not 0 <= cfg.collage <= 1:
        raise DistillError(f"--collage {cfg.collage}: expected a probability in 0..1")
    if cfg.precision not in ("auto", "fp32", "bf16", "fp16"):
        raise DistillError(f"--precision {cfg.precision}: expected auto, fp32, bf16 or fp16")
    if cfg.teacher_precision not in ("fp32", "bf16"):
        raise DistillError(f"--teacher-precision {cfg.teacher_precision}: expected fp32 or bf16")
    if not 0.25 <= cfg.teacher_scale <= 8:
        raise DistillError(f"--teacher-scale {cfg.teacher_scale}: expected 0.25..8")
    if cfg.cache_views < 1 or cfg.initial_views < 1:
        raise DistillError("--cache-views and the initial view count must be >= 1")


def _run(cfg: DistillConfig, device: torch.device) -> Path:
    rank, world, _ = dist_info()
    main = rank == 0
    out = Path(cfg.out)
    run_dir = out / "run"
    ckpt_path = run_dir / "checkpoint.pt"
    if main and not cfg.resume and ckpt_path.exists():
        raise DistillError(f"--out {out}: holds an earlier run (run/checkpoint.pt); pass --resume to continue "
                           f"it or choose another --out")
    barrier()
    if cfg.resume and not ckpt_path.exists():
        log.warning("--resume: no checkpoint in %s; starting a new run", run_dir)
    _seed_everything(cfg.seed + 1000 * rank)
    data = _load_data(cfg, device)
    if main:  # only now: a run refused for its teachers or data leaves no folder behind
        run_dir.mkdir(parents=True, exist_ok=True)
    cache = _open_cache(cfg, data, Path(cfg.cache_dir) if cfg.cache_dir else run_dir / "cache", main)
    trainer = _Trainer(cfg, device, data, cache, _Nets(cfg, device, data.feat_ch), run_dir, rank, world)
    if cfg.resume and ckpt_path.exists():
        trainer.resume(ckpt_path)
    trainer.wrap_distributed()
    trainer.prepare()
    with _MetricsLog(run_dir / "metrics.jsonl" if main else None) as metrics:
        interrupted = trainer.train(metrics)
        trainer.save_checkpoint()
        if interrupted:
            raise KeyboardInterrupt(f"interrupted at step {trainer.step}; checkpoint saved in {ckpt_path}; "
                                    f"run again with --resume to continue")
        barrier()
        if main:
            trainer.finish(out, metrics)
    barrier()
    return out


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


@dataclass
class _Data:
    """A run's teachers (one per style row), its pictures, and what keys its teacher-output cache."""

    teachers: list[Teacher]
    images: ImageSet
    held_images: ImageSet
    train_items: list
    held_items: list
    spec: ViewSpec
    feat_ok: bool  # feature matching is on (every teacher exposes a trunk layer)
    feat_ch: list[int] | None  # channels of each teacher's trunk features
    cache_key: dict


def _load_data(cfg: DistillConfig, device: torch.device) -> _Data:
    """Load the teachers and pictures; split off the held-out pictures unless ``cfg.held_out`` names them."""
    teachers = _load_teachers(cfg, torch.device("cpu") if device.type == "cpu" else device)
    for st, t in zip(cfg.styles, teachers):
        log.info("style %s: teacher %s — %s", st.id, t.name, t.describe)
    images = ImageSet(cfg.data)
    if cfg.held_out:
        held_images = ImageSet(cfg.held_out)
        train_items, held_items = list(images.items), list(held_images.items)
    else:
        held_images = images
        train_items, held_items = images.split()
    log.info("data: %d pictures for training, %d held out%s", len(train_items), len(held_items),
             f"; skipped {len(images.skipped)}" if images.skipped else "")

    spec = ViewSpec(cfg.view_width, cfg.view_height, cfg.frame_width, cfg.teacher_scale, cfg.scale_jitter,
                    cfg.noise, cfg.color_jitter, cfg.gray, cfg.tone, cfg.collage)
    cache_key = {"teachers": [[t.sha256, t.options] for t in teachers], "data": [it.label for it in train_items],
                 "spec": dataclasses.asdict(spec), "seed": cfg.seed, "version": 1}
    if cfg.teacher_precision != "fp32":
        cache_key["teacher_precision"] = cfg.teacher_precision
    feat_ok = cfg.w_feature > 0 and all(t.module is not None and t.feature_layer for t in teachers)
    if cfg.w_feature > 0 and not feat_ok:
        log.warning("feature matching needs PyTorch teachers with a known trunk layer (CycleGAN); turned off")
    feat_ch = [_teacher_feature_channels(t) for t in teachers] if feat_ok else None
    if feat_ok:
        cache_key["features"] = [t.feature_layer for t in teachers]
    return _Data(teachers, images, held_images, train_items, held_items, spec, feat_ok, feat_ch, cache_key)


def _open_cache(cfg: DistillConfig, data: _Data, root: Path, main: bool) -> ViewCache:
    """The teacher-output cache: rank 0 creates the memmaps; the other ranks open them once they exist."""
    def open_() -> ViewCache:
        return ViewCache(root, data.cache_key, cfg.cache_views, cfg.view_height, cfg.view_width, len(cfg.styles),
                         data.feat_ch)

    cache = open_() if main else None
    barrier()
    return cache if cache is not None else open_()


class _Nets:
    """The networks a run trains and their optimisers.

    ``net`` is the student, ``ema`` its exponential moving average (what the pack gets), ``model`` the student
    with its feature adapters; ``ddp``/``disc_ddp`` are what the training step calls (wrapped in
    DistributedDataParallel under torchrun, else the same modules).
    """

    def __init__(self, cfg: DistillConfig, device: torch.device, feat_ch: list[int] | None):
        self.net = build_student(cfg.arch, cfg.width, len(cfg.styles)).to(device)
        self.ema = copy.deepcopy(self.net).eval().requires_grad_(False)
        # One 1x1 adapter per style row, from the student's trunk (4·width channels, 1/4 scale) to its teacher's.
        adapters = nn.ModuleList(FeatureAdapter(4 * cfg.width, c) for c in feat_ch).to(device) if feat_ch else None
        self.model = _StudentWithFeatures(self.net, adapters)
        self.disc = PatchDiscriminator().to(device) if cfg.w_adv > 0 else None
        self.params = list(self.model.parameters())
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
        self.opt_d = (torch.optim.AdamW(self.disc.parameters(), lr=cfg.lr * 0.5, betas=(0.5, 0.99))
                      if self.disc else None)
        self.amp_dtype = _train_dtype(cfg.precision, device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        log.info("student training precision: %s",
                 "fp32" if self.amp_dtype is None else str(self.amp_dtype).split(".")[-1])
        self.ddp: nn.Module = self.model
        self.disc_ddp: nn.Module | None = self.disc

    def autocast(self, device: torch.device) -> torch.autocast:
        return torch.autocast(device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None)

    def state(self) -> dict:
        st = {"model": self.model.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict()}
        if self.disc is not None:
            st["disc"], st["opt_d"] = self.disc.state_dict(), self.opt_d.state_dict()
        return st

    def load(self, ck: dict, ckpt_path: Path, arch: str) -> None:
        """Load the weights and optimiser states of a checkpoint.

        Raises:
            CheckpointMismatch: The weights do not fit these networks.
        """
        try:
            self.model.load_state_dict(ck["model"])
            self.ema.load_state_dict(ck["ema"])
        except RuntimeError as e:
            first = str(e).strip().splitlines()[1:2] or [str(e)]
            raise CheckpointMismatch(f"--resume: {ckpt_path} does not fit this {arch} student "
                                     f"({first[0].strip()}); choose another --out to start over") from None
        self.opt.load_state_dict(ck["opt"])
        if self.disc is not None and "disc" in ck:
            self.disc.load_state_dict(ck["disc"])
            self.opt_d.load_state_dict(ck["opt_d"])


class _MetricsLog:
    """``run/metrics.jsonl``, one JSON object a line, flushed at once; does nothing on ranks other than 0."""

    def __init__(self, path: Path | None):
        self.path, self._f = path, None

    def __enter__(self) -> _MetricsLog:
        if self.path is not None:
            self._f = open(self.path, "a", encoding="utf-8")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._f is not None:
            self._f.close()

    def write(self, record: dict) -> None:
        if self._f is not None:
            self._f.write(json.dumps(record) + "\n")
            self._f.flush()


class _RunningLosses:
    """Loss parts summed since the last log line, and how many steps that was in how long."""

    def __init__(self):
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.n = 0
        self.t0 = time.monotonic()

    def add(self, parts: dict[str, torch.Tensor], loss: float) -> None:
        for k, v in parts.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v.detach())
        self.sums["loss"] = self.sums.get("loss", 0.0) + loss
        self.n += 1

    def record(self, step: int, time_s: float, lr: float, cache_views: int) -> dict:
        """The ``metrics.jsonl`` line: step, time, rate, and the mean of every part; starts a new sum."""
        rec = {"step": step, "time_s": time_s, "lr": lr,
               "it_per_s": round(self.n / max(time.monotonic() - self.t0, 1e-9), 3), "cache_views": cache_views,
               **{k: round(v / self.n, 6) for k, v in self.sums.items()}}
        self._reset()
        return rec


class _Trainer:
    """The training loop of one run. Its state lives here; each part of a step is a method.

    Rank 0 grows the teacher cache, logs, evaluates, checkpoints and exports; every rank trains.
    """

    def __init__(self, cfg: DistillConfig, device: torch.device, data: _Data, cache: ViewCache, nets: _Nets,
                 run_dir: Path, rank: int, world: int):
        self.cfg, self.device, self.data, self.cache, self.nets = cfg, device, data, cache, nets
        self.run_dir, self.rank, self.world, self.main = run_dir, rank, world, rank == 0
        self.num_styles = len(cfg.styles)
        self.step, self.elapsed = 0, 0.0
        self.teacher_s = 0.0  # seconds spent making views (rank 0)
        self.t_start = 0.0
        self.stop_requested = False  # set by SIGTERM: finish the step, checkpoint, then stop
        self.first_loss: float | None = None
        self.es: EvalSet | None = None
        self.t_evals: list[dict] | None = None  # the teachers' outputs on the evaluation set, once computed

    # ---- set-up -------------------------------------------------------------------------------
    def resume(self, ckpt_path: Path) -> None:
        cfg = self.cfg
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ck.get("arch") != [cfg.arch, cfg.width, self.num_styles]:
            raise DistillError(f"--resume: checkpoint is {ck.get('arch')}, this run is "
                               f"{[cfg.arch, cfg.width, self.num_styles]}")
        self.nets.load(ck, ckpt_path, cfg.arch)
        self.step, self.elapsed = int(ck["step"]), float(ck["elapsed"])
        self.teacher_s = float(ck.get("teacher_s", 0.0))
        torch.set_rng_state(ck["rng"])
        log.info("resumed from %s at step %d (%.1f min)", ckpt_path, self.step, self.elapsed / 60)

    def wrap_distributed(self) -> None:
        if self.world <= 1:
            return
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.nets.ddp = nn.parallel.DistributedDataParallel(self.nets.model, device_ids=ids)
        if self.nets.disc is not None:
            self.nets.disc_ddp = nn.parallel.DistributedDataParallel(self.nets.disc, device_ids=ids)

    def prepare(self) -> None:
        """Build the evaluation set, write ``config.json`` and fill the cache's first views (rank 0)."""
        cfg = self.cfg
        self.es = build_eval_set(self.data.held_images, self.data.held_items, cfg.frame_width, cfg.teacher_scale,
                                 cfg.eval_frames, cfg.eval_clips, cfg.clip_len)
        self.t_start = time.monotonic() - self.elapsed
        if self.main:
            (self.run_dir / "config.json").write_text(json.dumps(cfg.resolved(), indent=2, default=str) + "\n")
            self.fill(cfg.initial_views)
        barrier()
        self.cache.reload()

    # ---- pieces of the loop ----------------------------------------------------------------------
    def progress(self, elapsed: float) -> float:
        """How far the run is, 0..1: in steps, or in wall time under ``--minutes``."""
        return self.step / self.cfg.steps if self.cfg.steps else elapsed / (self.cfg.minutes * 60)

    def fill(self, target: int) -> None:
        """Make teacher views until the cache holds ``target`` (or is full)."""
        d = self.data
        t0 = time.monotonic()
        while self.cache.count < min(target, self.cache.capacity):
            x, ts, fs = make_view(d.images, d.train_items, d.spec, self.cache.count, self.cfg.seed, d.teachers,
                                  d.feat_ok, self.cfg.teacher_precision)
            self.cache.add(x, ts, fs)
        self.teacher_s += time.monotonic() - t0

    def grow_cache(self, elapsed: float) -> None:
        # One view at a time (rank 0), keeping the teacher's share of the wall time under teacher_share,
        # so a slow teacher never starves the student.
        if self.main and self.cache.count < self.cache.capacity and self.teacher_s <= self.cfg.teacher_share * elapsed:
            self.fill(self.cache.count + 1)
        if self.world > 1 and self.step % 20 == 0:
            self.cache.reload()

    def set_lr(self, progress: float) -> float:
        lr_f = _lr_factor(progress, self.step, self.cfg.warmup)
        for g in self.nets.opt.param_groups:
            g["lr"] = self.cfg.lr * lr_f
        return lr_f

    def batch(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, list, np.ndarray, torch.Tensor]:
        """Views ``x``, teacher targets ``y`` and features from the cache, their style rows and one-hot weights."""
        cfg = self.cfg
        idx = rng.integers(0, self.cache.count, cfg.batch)
        rows = rng.integers(0, self.num_styles, cfg.batch)
        x, y, tf = self.cache.batch(idx, rows, cfg.crop, rng)
        x, y = x.to(self.device), y.to(self.device)
        sw = F.one_hot(torch.as_tensor(rows), self.num_styles).float().to(self.device)
        return x, y, tf, rows, sw

    def student_losses(self, x: torch.Tensor, y: torch.Tensor, tf: list, rows: np.ndarray, sw: torch.Tensor,
                       gen: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """The student's weighted loss, its parts, and the student's output ``s`` on ``x``."""
        cfg, nets, dev = self.cfg, self.nets, self.device
        theta = random_affine(cfg.batch, generator=gen).to(dev)
        xw, _ = warp(x, theta)
        with nets.autocast(dev):
            both, feats = nets.ddp(torch.cat([x, xw]), torch.cat([sw, sw]))  # one pass: DDP needs one forward
        # The losses compare small differences of images in [0, 1]: always in fp32.
        s, s_w = both[: cfg.batch].float(), both[cfg.batch:].float()
        parts = {"l1": F.l1_loss(s, y), "structure": laplacian_loss(s, y), "temporal": temporal_loss(s, s_w, theta)}
        loss = cfg.w_l1 * parts["l1"] + cfg.w_structure * parts["structure"] + cfg.w_temporal * parts["temporal"]
        if self.data.feat_ok:
            parts["feature"] = sum(feature_loss(feats[int(r)][i:i + 1].float(), tf[i][None].to(dev))
                                   for i, r in enumerate(rows)) / cfg.batch
            loss = loss + cfg.w_feature * parts["feature"]
        if nets.disc is not None:
            nets.disc.requires_grad_(False)
            with nets.autocast(dev):
                parts["adv_g"] = g_hinge_loss(nets.disc(x, s)).float()
            loss = loss + cfg.w_adv * parts["adv_g"]
        return loss, parts, s

    def update_student(self, loss: torch.Tensor) -> None:
        nets = self.nets
        nets.opt.zero_grad(set_to_none=True)
        nets.scaler.scale(loss).backward()
        nets.scaler.unscale_(nets.opt)
        nn.utils.clip_grad_norm_(nets.params, 1.0)
        nets.scaler.step(nets.opt)
        nets.scaler.update()

    def update_discriminator(self, x: torch.Tensor, y: torch.Tensor, s: torch.Tensor,
                             parts: dict[str, torch.Tensor]) -> None:
        nets = self.nets
        nets.disc.requires_grad_(True)
        with nets.autocast(self.device):
            logits = nets.disc_ddp(torch.cat([x, x]), torch.cat([y, s.detach()]))
            parts["adv_d"] = d_hinge_loss(logits[: self.cfg.batch], logits[self.cfg.batch:])
        nets.opt_d.zero_grad(set_to_none=True)
        parts["adv_d"].backward()
        nets.opt_d.step()

    @torch.no_grad()
    def update_ema(self) -> None:
        decay = min(self.cfg.ema, (1 + self.step) / (10 + self.step))
        for pe, pm in zip(self.nets.ema.parameters(), self.nets.net.parameters()):
            pe.lerp_(pm.detach(), 1 - decay)

    def train_step(self, rng: np.random.Generator, gen: torch.Generator) -> tuple[float, dict[str, torch.Tensor]]:
        """One optimisation step of the student (and the discriminator); returns the loss and its parts."""
        x, y, tf, rows, sw = self.batch(rng)
        loss, parts, s = self.student_losses(x, y, tf, rows, sw, gen)
        self.update_student(loss)
        if self.nets.disc is not None:
            self.update_discriminator(x, y, s, parts)
        self.update_ema()
        self.step += 1
        lv = float(loss.detach())
        if not math.isfinite(lv):
            raise DistillError(f"the loss became {lv} at step {self.step}; lower --lr (now {self.cfg.lr})")
        self.first_loss = lv if self.first_loss is None else self.first_loss
        return lv, parts

    def evaluate(self, tag: str) -> dict:
        """Metrics of every style row's EMA student on the evaluation set; saves a sample sheet ``tag``."""
        es = self.es
        if self.t_evals is None:
            self.t_evals = [teacher_outputs(t, es, self.run_dir / "cache",
                                            t.sha256 + json.dumps(t.options, sort_keys=True, default=str))
                            for t in self.data.teachers]
        res = {}
        rows = []
        for k, st in enumerate(self.cfg.styles):
            s_out = student_outputs(self.nets.ema, k, es)
            res[st.id] = image_metrics(es, self.t_evals[k], s_out)
            rows.append([to_uint8(es.frames[0]), to_uint8(self.t_evals[k]["frames"][0]), to_uint8(s_out["frames"][0])])
        _save_jpg(self.run_dir / "samples" / f"{tag}.jpg", _grid(rows))
        return res

    def save_checkpoint(self) -> None:
        if not self.main:
            return
        cfg = self.cfg
        ck = {**self.nets.state(), "step": self.step, "elapsed": time.monotonic() - self.t_start,
              "teacher_s": self.teacher_s, "rng": torch.get_rng_state(),
              "arch": [cfg.arch, cfg.width, self.num_styles]}
        path = self.run_dir / "checkpoint.pt"
        tmp = path.with_suffix(".tmp")
        torch.save(ck, tmp)
        os.replace(tmp, path)

    # ---- the loop --------------------------------------------------------------------------------
    def train(self, metrics: _MetricsLog) -> bool:
        """Train until the steps or minutes are done; True when stopped early (Ctrl-C or SIGTERM)."""
        cfg = self.cfg
        bar = self._progress_bar()
        old_handler = signal.signal(signal.SIGTERM, self._on_sigterm) if _is_main_thread() else None
        rng = np.random.default_rng([cfg.seed, self.rank, self.step])
        gen = torch.Generator().manual_seed(cfg.seed * 7919 + self.rank * 31 + self.step)
        losses = _RunningLosses()
        last_ckpt = time.monotonic()
        try:
            self.nets.model.train()
            while True:
                # Every rank stops at the same step and schedules the same learning rate: the longest elapsed
                # time and any rank's stop request count (a rank left alone in a collective would hang).
                now, stop = max_over_ranks(time.monotonic() - self.t_start, float(self.stop_requested),
                                           device=self.device)
                self.stop_requested = stop > 0
                prog = self.progress(now)
                if prog >= 1.0 or self.stop_requested:
                    break
                self.grow_cache(now)
                lr_f = self.set_lr(prog)
                lv, parts = self.train_step(rng, gen)
                losses.add(parts, lv)
                self._after_step(metrics, bar, losses, cfg.lr * lr_f)
                if self.main and time.monotonic() - last_ckpt > cfg.checkpoint_every_s:
                    self.save_checkpoint()
                    last_ckpt = time.monotonic()
        except KeyboardInterrupt:
            return True
        finally:
            if bar is not None:
                bar.close()
            if old_handler is not None:
                signal.signal(signal.SIGTERM, old_handler)
        return self.stop_requested

    def _on_sigterm(self, signum, frame) -> None:  # noqa: ARG002
        self.stop_requested = True

    def _progress_bar(self):  # -> tqdm | None
        cfg = self.cfg
        if not (self.main and cfg.progress):
            return None
        from tqdm import tqdm

        return tqdm(total=cfg.steps if cfg.steps else int(cfg.minutes * 60),
                    initial=self.step if cfg.steps else int(self.elapsed),
                    unit="it" if cfg.steps else "s", dynamic_ncols=True, desc="distill")

    def _after_step(self, metrics: _MetricsLog, bar, losses: _RunningLosses, lr: float) -> None:
        """Log line, progress bar and evaluation, each when due (rank 0)."""
        cfg, step = self.cfg, self.step
        if self.main and step % cfg.log_every == 0:
            rec = losses.record(step, round(time.monotonic() - self.t_start, 2), lr, self.cache.count)
            metrics.write(rec)
            if bar is not None:
                bar.set_postfix(loss=f"{rec['loss']:.4f}", views=self.cache.count, refresh=False)
        if bar is not None:
            bar.update(1 if cfg.steps else max(0, int(time.monotonic() - self.t_start) - bar.n))
        if self.main and cfg.eval_every and step % cfg.eval_every == 0:
            metrics.write({"step": step, "eval": self.evaluate(f"step_{step:06d}")})

    def finish(self, out: Path, metrics: _MetricsLog) -> None:
        """Final evaluation, the style pack, and the last metrics line (rank 0)."""
        res = self.evaluate(f"step_{self.step:06d}_final")
        _export(self.cfg, out, self.nets.ema, self.data.teachers, self.es, self.t_evals, res, self.step,
                time.monotonic() - self.t_start)
        metrics.write({"step": self.step, "final": res, "first_loss": self.first_loss})


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _teacher_feature_channels(t: Teacher) -> int:
    mod = dict(t.module.named_modules())[t.feature_layer]
    convs = [m for m in mod.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


def _export(cfg: DistillConfig, out: Path, ema: StudentNet, teachers: list[Teacher], es: EvalSet,
            t_evals: list[dict], res: dict, step: int, seconds: float) -> Path:
    """Write the style pack: EMA weights, previews, provenance, recipe and full metrics."""
    speed = speed_metrics(ema, cfg.resolution)
    styles = []
    s_first = None
    for k, (st, t) in enumerate(zip(cfg.styles, teachers)):
        s_out = student_outputs(ema, k, es)
        prev = f"previews/{st.id}.jpg"
        _save_jpg(out / prev, to_uint8(s_out["frames"][0]), quality=88)
        m = dict(res[st.id])
        m.update(speed)
        tm = t.macs(*es.frames_t.shape[-2:])
        if tm:
            m["teacher_gmacs_640x480"] = round(tm / 1e9, 2)
            m["macs_ratio"] = round(tm / 1e9 / max(speed["gmacs_640x480"], 1e-9), 1)
        m["eval_frames"] = es.labels
        m["steps"] = step
        m["train_minutes"] = round(seconds / 60, 2)
        styles.append({
            "id": st.id, "name": st.name or st.id, "preview": prev,
            "teacher": {"name": t.name, "sha256": t.sha256, "options": t.options, "kind": t.kind,
                        "license": st.license or cfg.license, "source": st.source},
            "metrics": m,
            "recipe": {k2: v for k2, v in cfg.resolved().items() if k2 not in ("styles", "out", "resume", "progress")},
        })
        s_first = s_first or s_out
    meta = {"name": cfg.pack_name or out.name, "description": cfg.description or
            f"Distilled from {', '.join(sorted({t.name for t in teachers}))}",
            "license": cfg.license or "see each style's teacher licence", "resolution": list(cfg.resolution),
            "styles": styles, "recipe": cfg.resolved()}
    export = StudentNet(cfg.arch, cfg.width, len(cfg.styles))
    export.load_state_dict({k: v.detach().cpu() for k, v in ema.state_dict().items()})
    save_pack(out, export, meta)
    return out
