"""Distillation end to end: loss goes down, the pack loads and renders, resume, DDP, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from realtime.styles import StyleRegistry, load_pack
from realtime.student import style_weights
from tests.training.conftest import ColourGrade, save_cyclegan
from training import distill as distill_mod
from training.data import frame_view, _skimage_photo
from training.distill import DistillConfig, StyleSpec, distill, parse_style_arg
from ui.cli_training import main as cli

ROOT = Path(__file__).resolve().parents[2]


def tiny_config(out: Path, styles: list[StyleSpec], steps: int, **kw) -> DistillConfig:
    """A run small enough for a 2-core CI machine: 64×48 'frames', 48×36 views, 32 px crops."""
    base = dict(out=str(out), data=["skimage:astronaut,rocket,coffee,chelsea,camera"], styles=styles, steps=steps,
                arch="cin-resnet-xs", width=8, batch=4, crop=32, frame_width=64, view_width=48, view_height=36,
                cache_views=24, initial_views=8, eval_every=0, eval_frames=2, eval_clips=1, clip_len=3,
                warmup=10, lr=5e-3, progress=False, log_every=5)
    base.update(kw)
    return DistillConfig(**base)


@pytest.fixture(scope="module")
def grade_teacher(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("teacher") / "grade.pt"
    torch.jit.script(ColourGrade()).save(str(p))
    return p


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, grade_teacher) -> Path:
    out = tmp_path_factory.mktemp("run") / "grade-pack"
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module-scoped: runs before the per-test one-thread fixture
    try:
        distill(tiny_config(out, [StyleSpec("grade", "Grade", str(grade_teacher), license="MIT")], steps=200))
    finally:
        torch.set_num_threads(threads)
    return out


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]


def test_distillation_lowers_loss_and_writes_metrics(distilled):
    recs = [r for r in _log(distilled) if "loss" in r]
    assert recs[-1]["step"] == 200
    first, last = np.mean([r["loss"] for r in recs[:2]]), np.mean([r["loss"] for r in recs[-3:]])
    assert last < 0.6 * first, (first, last)
    meta = json.loads((distilled / "pack.json").read_text())
    m = meta["styles"][0]["metrics"]
    for k in ("psnr_vs_teacher", "ssim_vs_teacher", "fidelity_gain", "ewarp_student", "ewarp_teacher",
              "gmacs_640x480", "cpu_ms_640x480"):
        assert k in m
    assert m["fidelity_gain"] > 0.3  # identity: 0
    assert meta["resolution"] == [64, 48]
    t = meta["styles"][0]["teacher"]
    assert t["name"] == "grade.pt" and len(t["sha256"]) == 64 and t["license"] == "MIT"
    assert (distilled / meta["styles"][0]["preview"]).is_file()
    assert (distilled / "run" / "config.json").is_file()
    assert list((distilled / "run" / "samples").glob("*.jpg"))


def test_pack_loads_in_registry_and_renders_like_the_pipeline(distilled):
    reg = StyleRegistry([distilled], include_user=False, include_shipped=False)
    style = reg.find("grade")
    pack = reg.pack_of(style)
    net = pack.build()
    w, h = pack.resolution
    frame = frame_view(_skimage_photo("coffee"), 128)  # the "camera" frame, [1, 3, 96, 128]
    small = F.interpolate(frame, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        delta = net(small, style_weights(style.index, net.num_styles)) - small
    out = (frame + F.interpolate(delta, size=frame.shape[-2:], mode="bilinear", align_corners=False)).clamp(0, 1)
    target = ColourGrade()(frame)
    err_student = float((out - target).abs().mean())
    err_identity = float((frame - target).abs().mean())
    assert err_student < 0.8 * err_identity, (err_student, err_identity)


def test_export_onnx_matches_student(distilled, tmp_path):
    assert cli(["export-onnx", str(distilled), "-o", str(tmp_path / "s.onnx")]) == 0
    net = load_pack(distilled).build()
    sess = ort.InferenceSession(str(tmp_path / "s.onnx"))
    x = np.random.rand(1, 3, 50, 66).astype(np.float32)
    y = sess.run(None, {"image": x, "style_weights": np.ones(1, np.float32)})[0]
    with torch.no_grad():
        ref = net(torch.from_numpy(x), torch.ones(1, 1)).numpy()
    assert np.abs(y - ref).max() < 1e-4


def test_resume_after_interruption(tmp_path, grade_teacher, monkeypatch):
    out = tmp_path / "pack"
    calls = {"n": 0}
    real = distill_mod.laplacian_loss

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 13:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(distill_mod, "laplacian_loss", flaky)
    cfg = tiny_config(out, [StyleSpec("grade", teacher=str(grade_teacher))], steps=20)
    with pytest.raises(KeyboardInterrupt, match="--resume"):
        distill(cfg)
    ck = torch.load(out / "run" / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 12  # every finished step was kept
    monkeypatch.setattr(distill_mod, "laplacian_loss", real)
    with pytest.raises(distill_mod.DistillError, match="--resume"):
        distill(cfg)  # an existing run is never silently overwritten
    cfg.resume = True
    distill(cfg)
    steps = [r["step"] for r in _log(out) if "loss" in r]
    assert steps == [5, 10, 15, 20]
    assert torch.load(out / "run" / "checkpoint.pt", weights_only=True)["step"] == 20
    load_pack(out)


def test_held_out_pictures_are_evaluated_not_trained_on(tmp_path, grade_teacher):
    out = tmp_path / "held"
    cfg = tiny_config(out, [StyleSpec("grade", "Grade", str(grade_teacher))], steps=5,
                      data=["skimage:astronaut,rocket"], held_out=["skimage:camera"], crop=0, eval_frames=1)
    distill(cfg)
    m = json.loads((out / "pack.json").read_text())["styles"][0]["metrics"]
    assert m["eval_frames"] == ["skimage:camera"]
    key = json.loads(next((out / "run" / "cache").glob("*/key.json")).read_text())
    assert key["data"] == ["skimage:astronaut", "skimage:rocket"]  # every --data picture trains
    ck_path = out / "run" / "checkpoint.pt"
    ck = torch.load(ck_path, weights_only=True)
    ck["model"] = {k: v for k, v in ck["model"].items() if "head" not in k}  # weights of another student
    torch.save(ck, ck_path)
    cfg.resume = True
    with pytest.raises(distill_mod.CheckpointMismatch, match="does not fit"):
        distill(cfg)


def test_collage_views_and_bf16_targets_reach_the_cache(tmp_path, capsys):
    teacher = tmp_path / "g.pth"
    save_cyclegan(teacher, ngf=4, n_blocks=2)
    out = tmp_path / "mix"
    distill(tiny_config(out, [StyleSpec("g", "G", str(teacher), options={"range": "-1,1"})], steps=3,
                        collage=1.0, teacher_precision="bf16", cache_views=4, initial_views=4))
    key = json.loads(next((out / "run" / "cache").glob("*/key.json")).read_text())
    assert key["spec"]["collage"] == 1.0 and key["teacher_precision"] == "bf16"  # its own cache
    assert json.loads((out / "run" / "config.json").read_text())["teacher_precision"] == "bf16"
    assert cli(["distill", "--teacher", str(teacher), "--data", "skimage:astronaut", "--out", str(tmp_path / "o"),
                "--steps", "1", "--collage", "1.5"]) == 2
    assert "--collage 1.5: expected a probability" in capsys.readouterr().err


def test_training_precision_choices():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert distill_mod._train_dtype("auto", cpu) is None and distill_mod._train_dtype("auto", cuda) == torch.float16
    assert distill_mod._train_dtype("bf16", cpu) == torch.bfloat16 and distill_mod._train_dtype("fp32", cuda) is None
    with pytest.raises(distill_mod.DistillError, match="--precision fp16 needs a CUDA device"):
        distill_mod._train_dtype("fp16", cpu)


def test_bf16_training_runs_and_lowers_the_loss(tmp_path, grade_teacher):
    out = tmp_path / "bf16"
    torch.manual_seed(0)
    distill(tiny_config(out, [StyleSpec("grade", "Grade", str(grade_teacher))], steps=40, precision="bf16"))
    recs = [json.loads(x) for x in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in recs if "loss" in r]
    assert losses[-1] < 0.8 * losses[0]
    assert load_pack(out).build().head.weight.dtype == torch.float32  # exported weights stay fp32


def test_multi_style_rows_from_one_onnx_teacher(tmp_path):
    from tests.training.test_teachers import _export, _StyledNet

    torch.manual_seed(0)
    _export(_StyledNet(), tmp_path / "multi.onnx", (1, 3, 32, 32))
    styles = [parse_style_arg("warm:input.style_weights=onehot:0,name=Warm", str(tmp_path / "multi.onnx")),
              parse_style_arg("cool:input.style_weights=onehot:3,range=0,1", str(tmp_path / "multi.onnx"))]
    assert styles[1].options == {"inputs": {"style_weights": "onehot:3"}, "range": "0,1"}
    distill(tiny_config(tmp_path / "p", styles, steps=10, cache_views=8))
    pack = load_pack(tmp_path / "p")
    assert [s.id for s in pack.styles] == ["warm", "cool"] and pack.styles[0].name == "Warm"
    assert pack.styles[1].teacher["options"]["inputs"] == {"style_weights": "onehot:3"}
    assert pack.build().num_styles == 2


def test_ddp_two_process_gloo(tmp_path):
    teacher = tmp_path / "g.pth"
    save_cyclegan(teacher, ngf=4, n_blocks=2)
    out = tmp_path / "ddp-pack"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
           "ui.cli_training", "distill", "--teacher", str(teacher), "--data", "skimage:astronaut,rocket,coffee",
           "--out", str(out), "--steps", "6", "--arch", "cin-resnet-xs", "--width", "8", "--batch", "2",
           "--crop", "32", "--frame-width", "64", "--view", "48x36", "--cache-views", "6", "--device", "cpu",
           "--no-progress", "--eval-every", "0"]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "style pack written" in r.stdout
    pack = load_pack(out)
    assert pack.styles[0].metrics["fidelity_gain"] is not None
    recs = [json.loads(x) for x in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("step") == 6 for r in recs)


def test_cli_bad_input_is_one_line(tmp_path, capsys, grade_teacher):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "broken.jpg").write_bytes(b"not a jpeg")
    assert cli(["distill", "--teacher", str(grade_teacher), "--data", str(empty), "--out", str(tmp_path / "o"),
                "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("stylecam: error: --data") and "broken.jpg" in err[-1] and "1 unreadable" in err[-1]
    assert not (tmp_path / "o").exists()  # a refused run leaves no empty OUT/run/ behind
    assert cli(["distill", "--teacher", str(tmp_path / "nope.pth"), "--data", "skimage:", "--out",
                str(tmp_path / "o"), "--steps", "1"]) == 2
    assert "nope.pth: no such file" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert cli(["distill", "--teacher", str(grade_teacher), "--style", "a:colour=red", "--data", "skimage:",
                "--out", str(tmp_path / "o"), "--steps", "1"]) == 2
    assert "unknown key 'colour'" in capsys.readouterr().err
    assert cli(["export-onnx", str(tmp_path / "nopack"), "-o", str(tmp_path / "x.onnx")]) == 2
    assert "style pack" in capsys.readouterr().err


def test_evaluate_cli_rewrites_metrics(distilled, grade_teacher, capsys, tmp_path):
    import shutil

    pack = tmp_path / "copy"
    shutil.copytree(distilled, pack)
    meta = json.loads((pack / "pack.json").read_text())
    meta["styles"][0]["metrics"] = {}
    (pack / "pack.json").write_text(json.dumps(meta))
    assert cli(["evaluate", str(pack), "--teacher", str(grade_teacher), "--data",
                "skimage:astronaut,rocket,coffee,chelsea,camera", "--frames", "2"]) == 0
    res = json.loads(capsys.readouterr().out)
    m = load_pack(pack).styles[0].metrics
    assert m["fidelity_gain"] == res["grade"]["fidelity_gain"] > 0.3
    assert m["fidelity_gain_min"] <= m["fidelity_gain"] or len(m["per_picture"]) == 1
    assert m["eval"]["output"] == "640x480" and m["eval"]["set"] == "custom"
    assert m["ewarp_teacher"] > 0 and m["gmacs_640x480"] > 0
    before = (pack / "pack.json").read_text()
    assert cli(["evaluate", str(pack), "--teacher", str(grade_teacher), "--data", "skimage:camera",
                "--internal-size", "640x480"]) == 0
    assert json.loads(capsys.readouterr().out)["grade"]["eval"]["internal"] == "640x480"
    assert (pack / "pack.json").read_text() == before  # a size the pack does not run at is never recorded
    assert cli(["evaluate", str(pack), "--teacher", str(grade_teacher), "--internal-size", "big"]) == 2
    assert "--internal-size big: expected WIDTHxHEIGHT" in capsys.readouterr().err


def test_feature_matching_and_adversarial_with_cyclegan_teacher(tmp_path):
    teacher = tmp_path / "g.pth"
    save_cyclegan(teacher, ngf=4, n_blocks=2, affine=True)
    out = tmp_path / "fm"
    distill(tiny_config(out, [StyleSpec("cg", teacher=str(teacher))], steps=10, cache_views=6, initial_views=4,
                        w_feature=0.1, w_adv=0.05))
    recs = [r for r in _log(out) if "loss" in r]
    assert all(np.isfinite(r["feature"]) and np.isfinite(r["adv_d"]) for r in recs)
    feats = list((out / "run" / "cache").glob("*/features_0.npy"))
    assert feats and np.load(feats[0], mmap_mode="r").shape == (6, 16, 9, 12)  # [views, 4·ngf, h/4, w/4]
    load_pack(out)
