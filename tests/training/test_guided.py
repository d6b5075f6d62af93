"""Guided styles offline: default maps, motion clips, scoring as live, recipes with a guide."""

import json

import numpy as np
import pytest
import torch

from realtime.colormap import apply_map, apply_map_torch
from tests.realtime.test_guide import LOOK, _frame, _pack, _teacher_file
from training.guided import ewarp_np, evaluate_guided, fit_default_map, motion_clip


class _TorchLook:
    """A full-resolution teacher answering with LOOK (the scorer's interface: float RGB NCHW)."""

    sha256, options = "", {}

    def __call__(self, x):
        return apply_map_torch(LOOK, x)


def test_default_map_from_pictures_recovers_a_global_look():
    pics = [_frame(i)[:, :, ::-1] for i in range(4)]
    m = fit_default_map(_TorchLook(), pics, (32, 24))
    f = _frame(9)
    err = np.abs(apply_map(m, f).astype(int) - apply_map(LOOK, f).astype(int))
    assert err.mean() < 2 and err.max() <= 8  # an unseen frame: the ridge keeps extrapolation small


def test_motion_clip_motions_are_exact():
    frame = np.ascontiguousarray(_frame(1, 96, 128)[:, :, ::-1])
    clip, motions = motion_clip(frame, n=4, seed=0, noise=0.0)
    assert len(clip) == 4 and len(motions) == 3 and clip[0].shape == frame.shape
    moving = ewarp_np(clip, [np.array([[1.0, 0, 0], [0, 1, 0]])] * 3)  # pretending nothing moved
    assert ewarp_np(clip, motions) < 0.25 * moving


def test_scoring_as_live_uses_old_keyframes_and_reaches_a_global_teacher(tmp_path):
    pack = _pack(tmp_path, _teacher_file(tmp_path))
    frames = [("a", np.ascontiguousarray(_frame(3, 48, 64)[:, :, ::-1])),
              ("b", np.ascontiguousarray(_frame(4, 48, 64)[:, :, ::-1]))]
    m = evaluate_guided(pack, "look", _TorchLook(), frames, clip_len=8, scored=2, fps=10.0, lag_s=0.5)
    # at 10 fps and a 100 ms cadence every frame is a keyframe, each steering 5 frames later
    assert m["fidelity_gain"] > 0.9 and m["fidelity_gain_min"] > 0.9 and set(m["per_picture"]) == {"a", "b"}
    assert m["eval"]["map_age"] == ">= 0.5 s"
    # too short a clip for the lag: the scored frames still run on the default (identity) map
    m0 = evaluate_guided(pack, "look", _TorchLook(), frames[:1], clip_len=3, scored=2, fps=10.0, lag_s=0.5)
    assert abs(m0["fidelity_gain"]) < 0.05


def test_recipe_guide_is_validated(tmp_path):
    from training.recipes.recipe import RecipeError, load_recipe

    base = json.loads((__import__("pathlib").Path("training/recipes/film.json")).read_text())
    base["extends"] = str(__import__("pathlib").Path("training/recipes/base/portraits.json").resolve())
    p = tmp_path / "r.json"
    p.write_text(json.dumps(base))
    r = load_recipe(p)
    assert r.guide == {"keyframe": [480, 360], "cadence_ms": 5000.0, "map": "quadratic", "blend": 0.5,
                       "apply_to": "input", "student": False}
    base["guide"]["blend"] = 2
    p.write_text(json.dumps(base))
    with pytest.raises(RecipeError, match=r"guide.blend must be a number in \(0, 1\]"):
        load_recipe(p)
    base["guide"] = {"every": 3}
    p.write_text(json.dumps(base))
    with pytest.raises(RecipeError, match="guide must be an object with keys from"):
        load_recipe(p)


def test_per_picture_target():
    from training.recipes.targets import style_failures

    m = {"fidelity_gain": 0.9, "fidelity_gain_min": 0.7, "fidelity_gain_min_picture": "clock"}
    assert style_failures(m, {"fidelity_gain_min": 0.85, "fidelity_gain_picture_min": 0.75}) == [
        "fidelity_gain_min 0.700 (worst picture, clock) < target 0.75"]


def test_distill_guide_on_with_no_training_writes_a_guided_pack(tmp_path, capsys):
    import cv2

    from realtime.styles import load_pack
    from ui.cli import main

    teacher = _teacher_file(tmp_path)
    pics = []
    for i in range(3):
        pics.append(tmp_path / f"p{i}.png")
        cv2.imwrite(str(pics[-1]), _frame(i, 96, 128))
    out = tmp_path / "pack"
    assert main(["distill", "--teacher", str(teacher), "--teacher-range", "0,1", "--data", str(pics[0]), str(pics[1]),
                 "--held-out", str(pics[2]), "--out", str(out), "--guide", "on", "--minutes", "0"]) == 0
    text = capsys.readouterr().out
    assert "as live, fidelity_gain" in text and "no student" in text
    pack = load_pack(out)
    s = pack.styles[0]
    assert not pack.has_student and s.guide.teacher["path"] == str(teacher.resolve())
    assert s.metrics["fidelity_gain"] > 0.9  # a global teacher is matched exactly
    assert main(["evaluate", str(out), "--data", str(pics[2]), "--no-write"]) == 0
    assert json.loads(capsys.readouterr().out)[s.id]["eval"]["mode"] == "guided as live"
    assert main(["distill", "--teacher", str(teacher), "--data", str(pics[0]), "--out", str(tmp_path / "x"),
                 "--minutes", "0"]) == 2
    assert "add --guide on" in capsys.readouterr().err


@pytest.mark.parametrize("target, ships", [(0.9, True), (0.999, False)])
def test_make_styles_builds_a_guided_recipe_and_refuses_it_below_target(tmp_path, monkeypatch, capsys,
                                                                         target, ships):
    import hashlib

    from realtime.styles import load_pack
    from training import guided
    from training.recipes import build as builder

    cache = tmp_path / "cache"
    src = _teacher_file(tmp_path)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    cached = cache / "teachers" / "pkg-1.0" / "look.pt"  # where make styles fetched it
    cached.parent.mkdir(parents=True)
    cached.write_bytes(src.read_bytes())
    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "tiny.json").write_text(json.dumps({
        "name": "tiny", "pack_dir": "assets/styles/tiny",
        "teachers": {"t": {"package": "pkg", "version": "1.0", "file": "pkg/look.pt", "sha256": digest,
                           "license": "MIT", "source": "test"}},
        "styles": [{"id": "look", "name": "Look", "teacher": "t", "options": {"range": "0,1"}}],
        "data": {"train": ["skimage:astronaut"], "held_out": ["skimage:camera"]},
        "guide": {"keyframe": [32, 24], "cadence_ms": 100, "student": False},
        "targets": {"fidelity_gain_min": target, "fidelity_gain_picture_min": 0.5, "ewarp_ratio_max": 1.1}}))
    frames = [("a", np.ascontiguousarray(_frame(3, 48, 64)[:, :, ::-1]))]
    monkeypatch.setattr(guided, "held_out_frames", lambda *a, **k: frames)
    real = guided.evaluate_guided
    monkeypatch.setattr(guided, "evaluate_guided",
                        lambda *a, **k: real(*a, **{**k, "clip_len": 8, "scored": 2, "fps": 10.0}))
    monkeypatch.setattr(builder, "fetch_data", lambda recipes, cache: {r.name: {} for r in recipes})
    styles_root = tmp_path / "styles"
    code = builder.build(cache=cache, styles_root=styles_root, recipes_dir=rec, gallery=False)
    out = capsys.readouterr().out
    assert "look (selection): fidelity_gain" in out
    if ships:
        assert code == 0 and "shipped 1 guided style(s)" in out, out
        pack = load_pack(styles_root / "tiny")
        assert not pack.has_student and pack.styles[0].guide.teacher["name"] == "look.pt"
        assert pack.styles[0].guide.teacher["sha256"] == digest and (styles_root / "tiny/previews/look.jpg").is_file()
        assert pack.styles[0].metrics["eval"]["set"] == "reporting" and pack.meta["built_from"] == "training/recipes/tiny.json"
    else:
        assert code == 1 and "refused look: fidelity_gain" in out and not (styles_root / "tiny").exists()
