"""Evaluation of a student against its teacher at the student's own resolution, as distillation tracks it.

These are training-time numbers: ``stylecam distill`` logs them and records them in the pack it
writes. They score the student's 320×240 output, not the frame the user sees, and the pictures they
use may be few; what a pack reports and what ``make styles`` accepts on come from
:mod:`training.heldout` (the 640×480 output of the render path on the held-out selection and
reporting sets), which replaces the image metrics below in ``pack.json`` and keeps the speed ones.

Definitions (all at the student's resolution, the pack's ``resolution``, e.g. 320×240 for a
640×480 camera frame; the teacher sees each frame at its own scale, ``teacher_scale``× larger,
and its output is area-resized down):

- ``psnr_vs_teacher``, ``ssim_vs_teacher``: student vs teacher output on held-out frames.
- ``fidelity_gain = 1 − ‖S(x) − T(x)‖ / ‖x − T(x)‖`` (L2 norms over all held-out frames): 1 when
  the student equals the teacher, 0 for the identity.
- ``ewarp_student`` / ``ewarp_teacher``: temporal warping error (Lai et al., ECCV 2018) on
  known-motion clips built from held-out pictures (a small random affine motion per frame plus
  sensor-like noise). With the exact flow known, ``E = mean_t Σ M‖O_{t+1} − warp(O_t)‖² / Σ M``
  where ``M`` marks pixels whose source lies inside the previous frame. Lower is steadier.
- ``gmacs_640x480``: the student's multiply–accumulates per 640×480 camera frame, i.e. one pass at the
  pack resolution as the live pipeline runs it (``realtime.student.count_macs``).
- ``cpu_ms_640x480``: median CPU wall time of that pass (torch, current thread count).
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from realtime.student import StudentNet, count_macs, style_weights
from realtime.styles import load_pack, save_pack

from .data import ImageSet, Item, downscale, frame_view
from .losses import compose_affine, invert_affine, psnr, random_affine, ssim, warp

__all__ = ["EvalSet", "build_eval_set", "fidelity_gain", "ewarp", "teacher_outputs", "student_outputs",
           "image_metrics", "speed_metrics", "evaluate_student", "evaluate_pack"]


@dataclass
class EvalSet:
    """Held-out frames and known-motion clips at both scales.

    Attributes:
        frames: ``[F, 3, h, w]`` at the student's scale; frames_t: ``[F, 3, H, W]`` at the teacher's.
        clips: list of ``[T, 3, h, w]``; clips_t: list of ``[T, 3, H, W]``.
        motions: list of ``[T-1, 2, 3]``: frame ``t+1 = warp(frame t, motions[t])`` (exact flow).
    """

    frames: torch.Tensor
    frames_t: torch.Tensor
    clips: list[torch.Tensor]
    clips_t: list[torch.Tensor]
    motions: list[torch.Tensor]
    labels: list[str]

    @property
    def resolution(self) -> tuple[int, int]:
        return int(self.frames.shape[-1]), int(self.frames.shape[-2])

    def key(self) -> str:
        h = hashlib.sha256()
        for t in [self.frames_t, *self.clips_t]:
            h.update(t.numpy().tobytes())
        return h.hexdigest()[:16]


def build_eval_set(images: ImageSet, items: Sequence[Item], frame_width: int = 320, teacher_scale: float = 2.0,
                   max_frames: int = 4, clips: int = 2, clip_len: int = 6, noise: float = 0.01,
                   seed: int = 1234) -> EvalSet:
    """Frames from held-out pictures and known-motion clips made from them.

    Each clip starts from a picture resized to 1.25× a frame, so the moving 4:3 window stays inside
    it; every step is a random rotation ≤ 1°, zoom ≤ 1 % and shift ≤ 1.5 % of the frame, and each
    frame gets its own Gaussian noise (σ = ``noise``) at the camera's resolution before the student's
    copy is shrunk from it, as a camera frame is.
    """
    gen = torch.Generator().manual_seed(seed)
    pics = [images.load(it) for it in items]
    order = list(range(len(pics)))
    sel = [order[i % len(order)] for i in range(max(1, min(max_frames, len(order))))]
    frames_t = torch.cat([frame_view(pics[i], frame_width, teacher_scale) for i in sel])
    th, tw = frames_t.shape[-2:]
    sh, sw = int(round(th / teacher_scale)), int(round(tw / teacher_scale))
    frames = downscale(frames_t, (sh, sw))
    clip_s, clip_t, motions = [], [], []
    for c in range(clips):
        pic = pics[order[c % len(order)]]
        big = frame_view(pic, frame_width, teacher_scale * 1.25)  # [1, 3, 1.25H, 1.25W]
        a = torch.tensor([[[0.8, 0.0, 0.0], [0.0, 0.8, 0.0]]])  # the frame sees the central 80 %
        ts, rel = [], []
        for t in range(clip_len):
            if t:
                step = random_affine(1, 1.0, 0.01, 0.015, generator=gen)
                nxt = compose_affine(a, step)
                rel.append(compose_affine(invert_affine(a), nxt)[0])
                a = nxt
            grid = torch.nn.functional.affine_grid(a, [1, 3, th, tw], align_corners=False)
            f = torch.nn.functional.grid_sample(big, grid, mode="bilinear", padding_mode="border",
                                                align_corners=False)
            f = (f + noise * torch.randn(f.shape, generator=gen)).clamp(0, 1)
            ts.append(f)
        ft = torch.cat(ts)
        clip_t.append(ft)
        clip_s.append(downscale(ft, (sh, sw)))
        motions.append(torch.stack(rel))
    labels = [items[i].label for i in sel]
    return EvalSet(frames, frames_t, clip_s, clip_t, motions, labels)


def fidelity_gain(x: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> float:
    """``1 − ‖s − t‖ / ‖x − t‖`` over the whole batch (1: student equals teacher; 0: the identity)."""
    den = float(torch.linalg.vector_norm((x - t).double()))
    num = float(torch.linalg.vector_norm((s - t).double()))
    if den == 0.0:
        return 1.0 if num == 0.0 else 0.0
    return 1.0 - num / den


def ewarp(outputs: torch.Tensor, motions: torch.Tensor) -> float:
    """Temporal warping error of a clip's outputs with the exact known motion.

    Shape:
        outputs: ``[T, 3, h, w]`` in [0, 1]; motions: ``[T-1, 2, 3]``
        (``frame t+1 = warp(frame t, motions[t])``).
    """
    prev, valid = warp(outputs[:-1], motions)
    err = ((outputs[1:] - prev) ** 2).sum(1, keepdim=True) * valid  # [T-1, 1, h, w]
    per = err.flatten(1).sum(1) / valid.flatten(1).sum(1).clamp_min(1.0)
    return float(per.mean())


def _batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return torch.cat([downscale(fn(x[i:i + 1]), size) for i in range(x.shape[0])])


def teacher_outputs(teacher: Callable[[torch.Tensor], torch.Tensor], es: EvalSet,
                    cache: Path | None = None, key: str = "") -> dict[str, torch.Tensor | list]:
    """The teacher's outputs on an eval set, at the student's scale (cached on disk when ``cache`` is set)."""
    path = None
    if cache is not None:
        path = Path(cache) / f"eval_teacher_{hashlib.sha256((key + es.key()).encode()).hexdigest()[:16]}.pt"
        if path.exists():
            try:
                return torch.load(path, weights_only=True)
            except Exception:  # noqa: BLE001 - a torn cache file is recomputed
                pass
    size = tuple(es.frames.shape[-2:])
    out = {"frames": _batched(teacher, es.frames_t, size),
           "clips": [_batched(teacher, c, size) for c in es.clips_t]}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(out, tmp)
        tmp.replace(path)
    return out


def student_outputs(net: StudentNet, style: int | Sequence[float], es: EvalSet) -> dict[str, torch.Tensor | list]:
    """The student's outputs on an eval set (it runs at the student's scale, like the live pipeline)."""
    p = next(net.parameters())
    was = net.training
    net.eval()
    with torch.no_grad():
        def run(x: torch.Tensor) -> torch.Tensor:
            sw = style_weights(style, net.num_styles, x.shape[0], device=p.device)
            return torch.cat([net(x[i:i + 1].to(p.device), sw[:1]).float().cpu() for i in range(x.shape[0])])

        out = {"frames": run(es.frames), "clips": [run(c) for c in es.clips]}
    net.train(was)
    return out


def image_metrics(es: EvalSet, t_out: dict, s_out: dict) -> dict[str, float]:
    """PSNR/SSIM vs teacher, fidelity gain and E_warp of both, from precomputed outputs."""
    x, t, s = es.frames, t_out["frames"], s_out["frames"]
    return {
        "psnr_vs_teacher": round(min(psnr(s, t), 100.0), 3),  # equal images: capped, JSON has no inf
        "ssim_vs_teacher": round(float(ssim(s, t)), 4),
        "fidelity_gain": round(fidelity_gain(x, t, s), 4),
        "ewarp_student": round(statistics.fmean(ewarp(o, m) for o, m in zip(s_out["clips"], es.motions)), 6),
        "ewarp_teacher": round(statistics.fmean(ewarp(o, m) for o, m in zip(t_out["clips"], es.motions)), 6),
        "ewarp_input": round(statistics.fmean(ewarp(o, m) for o, m in zip(es.clips, es.motions)), 6),
    }


def speed_metrics(net: StudentNet, resolution: tuple[int, int], repeats: int = 15) -> dict[str, float]:
    """GMACs and median CPU ms of one student pass at ``resolution`` (w, h) — one 640×480 frame live."""
    w, h = resolution
    cpu = StudentNet(net.arch, net.width, net.num_styles)
    cpu.load_state_dict({k: v.detach().float().cpu() for k, v in net.state_dict().items()})
    cpu.eval()
    x = torch.rand(1, 3, h, w)
    sw = style_weights(0, cpu.num_styles)
    times = []
    with torch.inference_mode():
        for i in range(repeats + 3):
            t0 = time.perf_counter()
            cpu(x, sw)
            if i >= 3:
                times.append((time.perf_counter() - t0) * 1000)
    return {"gmacs_640x480": round(count_macs(cpu, h, w) / 1e9, 4),
            "cpu_ms_640x480": round(statistics.median(times), 2),
            "cpu_threads": torch.get_num_threads()}


def evaluate_student(net: StudentNet, style: int, teacher, es: EvalSet, cache: Path | None = None,
                     teacher_key: str = "", speed: bool = True) -> dict[str, float]:
    """All metrics of one style row against its teacher (see the module docstring for definitions)."""
    t_out = teacher_outputs(teacher, es, cache, teacher_key)
    m = image_metrics(es, t_out, student_outputs(net, style, es))
    if speed:
        m.update(speed_metrics(net, es.resolution))
        tm = teacher.macs(*es.frames_t.shape[-2:]) if hasattr(teacher, "macs") else None
        if tm:
            m["teacher_gmacs_640x480"] = round(tm / 1e9, 2)
            m["macs_ratio"] = round(tm / 1e9 / max(m["gmacs_640x480"], 1e-9), 1)
    return m


def evaluate_pack(pack_dir: str | Path, teachers: dict[str, object] | object, data: Sequence[str],
                  write: bool = True, max_frames: int = 4, clips: int = 2, clip_len: int = 6,
                  teacher_scale: float | None = None, held_out_only: bool = True,
                  cache: Path | None = None) -> dict[str, dict]:
    """Evaluate every style of a pack against its teacher and (optionally) write the metrics into pack.json.

    Args:
        pack_dir: the style pack.
        teachers: one teacher for all styles, or ``{style_id: teacher}``.
        data: data sources (their held-out split is used unless ``held_out_only`` is False).
        teacher_scale: the teacher's input scale relative to the student's (default: each style's
            recipe, else 2).

    Returns:
        ``{style_id: metrics}``.
    """
    from .teachers import Teacher

    pack = load_pack(pack_dir)
    net = pack.build()
    res = pack.resolution or (320, 240)
    images = ImageSet(data)
    items = images.split()[1] if held_out_only else images.items  # no split (and no split warning) otherwise
    results: dict[str, dict] = {}
    sets: dict[float, EvalSet] = {}
    for st, sm in zip(pack.styles, pack.meta["styles"]):
        teacher = teachers.get(st.id) if isinstance(teachers, dict) else teachers
        if teacher is None:
            continue
        scale = teacher_scale or float((sm.get("recipe") or pack.meta.get("recipe") or {}).get("teacher_scale", 2.0))
        if scale not in sets:
            sets[scale] = build_eval_set(images, items, res[0], scale, max_frames, clips, clip_len)
        key = f"{getattr(teacher, 'sha256', '')}{json.dumps(getattr(teacher, 'options', {}), sort_keys=True)}"
        m = evaluate_student(net, st.index, teacher, sets[scale], cache, key)
        m["eval_frames"] = sets[scale].labels
        results[st.id] = m
        if isinstance(teacher, Teacher):
            sm.setdefault("teacher", {}).update({"name": teacher.name, "sha256": teacher.sha256,
                                                 "options": teacher.options})
        sm["metrics"] = {**(sm.get("metrics") or {}), **m}
    if write and results:
        save_pack(pack.path, net, pack.meta)
    return results

