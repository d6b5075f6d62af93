"""CycleGAN teacher training: a few steps on tiny images, checkpoints read back by load_teacher."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from realtime.errors import InputError
from training.teacher_train import TeacherTrainConfig, train_teacher
from training.teachers import load_teacher


def _folder(path, colour, n=3):
    path.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        img = (rng.random((40, 48, 3)) * 60 + np.array(colour)).clip(0, 255).astype(np.uint8)
        cv2.imwrite(str(path / f"{i}.png"), img)
    return path


def test_train_teacher_few_steps_and_load_back(tmp_path):
    a, b = _folder(tmp_path / "a", (30, 30, 30)), _folder(tmp_path / "b", (180, 120, 60))
    cfg = TeacherTrainConfig([str(a)], [str(b)], str(tmp_path / "t"), steps=4, size=32, ngf=4, ndf=4, n_blocks=2,
                             checkpoint_every=2, progress=False, device="cpu")
    out = train_teacher(cfg)
    for name in ("G_A", "G_B", "D_A", "D_B"):
        assert (out / f"latest_net_{name}.pth").is_file()
    sd = torch.load(out / "latest_net_G_A.pth", weights_only=True)
    assert "model.10.conv_block.1.weight" in sd  # the standard key layout
    t = load_teacher(out / "latest_net_G_A.pth")
    assert "2 blocks" in t.describe and t(torch.rand(1, 3, 32, 40)).shape == (1, 3, 32, 40)
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert recs[-1]["step"] == 4 and all(np.isfinite(r["cycle"]) for r in recs)
    with pytest.raises(InputError, match="--resume"):
        train_teacher(cfg)
    cfg.resume, cfg.steps = True, 6
    train_teacher(cfg)
    assert torch.load(out / "state.pt", weights_only=True)["step"] == 6
