"""Metrics on cases with known answers."""

from __future__ import annotations

import torch

from training.data import ImageSet
from training.evaluate import build_eval_set, ewarp, fidelity_gain, image_metrics
from training.losses import laplacian_loss, random_affine, ssim, temporal_loss, warp


def test_fidelity_gain_known_answers():
    x = torch.rand(2, 3, 16, 16)
    t = (x * 0.5 + 0.3).clamp(0, 1)
    assert fidelity_gain(x, t, t) == 1.0  # the student equals the teacher
    assert fidelity_gain(x, t, x) == 0.0  # the identity
    half = (x + t) / 2
    assert abs(fidelity_gain(x, t, half) - 0.5) < 1e-9


def test_ewarp_zero_for_exact_motion_and_positive_for_flicker():
    torch.manual_seed(0)
    base = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8), size=(64, 64), mode="bilinear")
    motions = torch.cat([random_affine(1, 1.0, 0.0, 0.02) for _ in range(3)])
    frames = [base]
    for m in motions:
        frames.append(warp(frames[-1], m[None])[0])
    clip = torch.cat(frames)
    assert ewarp(clip, motions) < 1e-10
    flicker = clip + 0.05 * torch.randn_like(clip)
    assert ewarp(flicker, motions) > 1e-3


def test_eval_set_identity_student_metrics():
    images = ImageSet(["skimage:coffee,chelsea"])
    es = build_eval_set(images, images.items, frame_width=64, teacher_scale=2.0, max_frames=2, clips=1, clip_len=3)
    assert es.frames.shape == (2, 3, 48, 64) and es.frames_t.shape == (2, 3, 96, 128)
    t_out = {"frames": 1 - es.frames, "clips": [1 - c for c in es.clips]}
    m = image_metrics(es, t_out, {"frames": es.frames, "clips": es.clips})
    assert m["fidelity_gain"] == 0.0 and m["ewarp_student"] == m["ewarp_input"]
    m = image_metrics(es, t_out, t_out)
    assert m["fidelity_gain"] == 1.0 and m["psnr_vs_teacher"] == 100.0 and m["ssim_vs_teacher"] == 1.0


def test_losses_zero_when_equal_and_temporal_detects_mismatch():
    a = torch.rand(2, 3, 32, 32)
    assert float(laplacian_loss(a, a)) == 0.0 and float(laplacian_loss(a, 1 - a)) > 0.1
    assert abs(float(ssim(a, a)) - 1.0) < 1e-6
    theta = random_affine(2)
    aw, _ = warp(a, theta)
    assert float(temporal_loss(a, aw, theta)) < 1e-6
    assert float(temporal_loss(a, a, theta)) > 0.05
