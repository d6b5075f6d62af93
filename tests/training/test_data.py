"""Data sources: folders with images and videos mixed, unreadable files named, splits, views, cache."""

from __future__ import annotations

import logging

import av
import cv2
import numpy as np
import pytest
import torch

from training.data import DataError, ImageSet, ViewCache, ViewSpec, make_view, sample_collage, sample_view


def _video(path, frames=12, size=(64, 48)):
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=12)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            img = np.full((size[1], size[0], 3), i * 20, np.uint8)
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


def test_mixed_folder_skips_and_names_bad_files(tmp_path, caplog):
    d = tmp_path / "data" / "sub"
    d.mkdir(parents=True)
    cv2.imwrite(str(d / "a.png"), np.zeros((20, 30, 3), np.uint8))
    cv2.imwrite(str(d / "b.webp"), np.full((20, 30, 3), 90, np.uint8))
    (d / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    (d / "notes.txt").write_text("ignored")
    _video(tmp_path / "data" / "clip.mp4")
    with caplog.at_level(logging.WARNING):
        s = ImageSet([tmp_path / "data"], video_frames=4)
    kinds = sorted(it.kind for it in s.items)
    assert kinds == ["image", "image", "video", "video", "video", "video"]
    assert len(s.skipped) == 1 and "broken.jpg" in s.skipped[0]
    assert "skipped 1 unreadable file(s)" in caplog.text and "broken.jpg" in caplog.text
    assert s.load(next(it for it in s.items if it.kind == "video")).shape == (48, 64, 3)
    train, held = s.split()
    assert held and train and not set(train) & set(held)
    # video frames stay on one side of the split
    vids = {it in held for it in s.items if it.kind == "video"}
    assert len(vids) == 1


def test_empty_and_missing_sources(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no usable images"):
        ImageSet([tmp_path / "empty"])
    with pytest.raises(DataError, match="no such file or folder"):
        ImageSet([tmp_path / "nope"])
    with pytest.raises(DataError, match="no such bundled photo"):
        ImageSet(["skimage:unicorn"])


def test_views_scale_and_cache_roundtrip(tmp_path):
    s = ImageSet(["skimage:astronaut,rocket"])
    spec = ViewSpec(width=48, height=36, frame_width=64, teacher_scale=2.0)
    v = sample_view(s.load(s.items[0]), spec, np.random.default_rng(0))
    assert v.shape == (1, 3, 72, 96) and 0 <= float(v.min()) and float(v.max()) <= 1
    teacher = lambda x: 1 - x  # noqa: E731
    x, ts, _ = make_view(s, s.items, spec, 3, 0, [teacher])
    x2, _, _ = make_view(s, s.items, spec, 3, 0, [teacher])
    assert x.shape == (1, 3, 36, 48) and torch.equal(x, x2)  # deterministic per index
    c = ViewCache(tmp_path, {"k": 1}, 4, 36, 48, 1)
    c.add(x, ts)
    c2 = ViewCache(tmp_path, {"k": 1}, 4, 36, 48, 1)  # reopened: the view is still there
    assert c2.count == 1
    xb, yb, fb = c2.batch(np.array([0, 0]), np.array([0, 0]), 32, np.random.default_rng(0))
    assert xb.shape == (2, 3, 32, 32) and fb is None
    assert float((yb - (1 - xb)).abs().max()) <= 2 / 255  # uint8 storage


def test_whole_view_batches_and_grey_views(tmp_path):
    s = ImageSet(["skimage:astronaut"])
    c = ViewCache(tmp_path, {"k": 2}, 2, 36, 48, 1)
    x, ts, _ = make_view(s, s.items, ViewSpec(width=48, height=36, frame_width=64), 0, 0, [lambda v: 1 - v])
    c.add(x, ts)
    xb, yb, _ = c.batch(np.array([0]), np.array([0]), 0, np.random.default_rng(0))
    assert xb.shape == (1, 3, 36, 48)  # crop 0: the whole view, never a patch
    assert torch.allclose(xb, torch.from_numpy(np.asarray(c.inputs[0])).float()[None] / 255)
    grey = ViewSpec(width=48, height=36, frame_width=64, noise=0.0, gray=1.0)  # noise would differ per channel
    colour = ViewSpec(width=48, height=36, frame_width=64, noise=0.0, gray=0.0)
    img = s.load(s.items[0])
    g = sample_view(img, grey, np.random.default_rng(5))
    assert float((g - g.mean(1, keepdim=True)).abs().max()) < 1e-6  # every channel equal
    col = sample_view(img, colour, np.random.default_rng(5))
    assert float((col - col.mean(1, keepdim=True)).abs().max()) > 0.05


def test_tone_jitter_changes_white_balance_and_is_reproducible():
    s = ImageSet(["skimage:astronaut"])
    img = s.load(s.items[0])
    plain = ViewSpec(width=48, height=36, frame_width=64, color_jitter=0.0, noise=0.0)
    toned = ViewSpec(width=48, height=36, frame_width=64, color_jitter=0.0, noise=0.0, tone=0.5)
    a = sample_view(img, plain, np.random.default_rng(3))
    b = sample_view(img, toned, np.random.default_rng(3))
    b2 = sample_view(img, toned, np.random.default_rng(3))
    assert torch.equal(b, b2)
    ratio = (b.mean((0, 2, 3)) / a.mean((0, 2, 3)))
    assert float(ratio.max() - ratio.min()) > 0.01  # channels scaled differently: a white-balance shift


def test_collages_mix_several_pictures_into_one_frame(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    for i, c in enumerate(colours):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((120, 160, 3), c[::-1], np.uint8))
    s = ImageSet([tmp_path])
    spec = ViewSpec(width=48, height=36, frame_width=64, noise=0.0, color_jitter=0.0, collage=1.0)
    for index in range(6):
        x, _, _ = make_view(s, s.items, spec, index, 0, [])
        assert x.shape == (1, 3, 36, 48)
        seen = {tuple(int(v) for v in px) for px in (x[0].permute(1, 2, 0) * 255).round().reshape(-1, 3)}
        assert len(seen & set(colours)) >= 2  # every collage holds at least two of the pictures
    pics = [s.load(it) for it in s.items]
    a = sample_collage(pics, spec, np.random.default_rng(1))
    assert torch.equal(a, sample_collage(pics, spec, np.random.default_rng(1)))  # reproducible
    assert a.shape == (1, 3, 72, 96)
    plain = ViewSpec(width=48, height=36, frame_width=64, noise=0.0, color_jitter=0.0)
    x, _, _ = make_view(s, s.items, plain, 0, 0, [])
    assert len({tuple(px.tolist()) for px in (x[0].permute(1, 2, 0) * 255).round().reshape(-1, 3)}) == 1


def test_bf16_teacher_targets_are_close_to_fp32():
    s = ImageSet(["skimage:astronaut"])
    spec = ViewSpec(width=48, height=36, frame_width=64)
    torch.manual_seed(0)
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 3, padding=1))
    teacher = lambda v: torch.sigmoid(conv(v))  # noqa: E731
    with torch.no_grad():
        x, (t32,), _ = make_view(s, s.items, spec, 2, 0, [teacher])
        x2, (t16,), _ = make_view(s, s.items, spec, 2, 0, [teacher], precision="bf16")
    assert torch.equal(x, x2) and t16.dtype == torch.float32
    err = float((t16 - t32).abs().max())
    assert 0 < err < 0.02  # computed in bfloat16 (not bit-equal), yet close
    with pytest.raises(ValueError, match="expected fp32 or bf16"):
        make_view(s, s.items, spec, 2, 0, [teacher], precision="fp16")
