"""The `stylecam` command line end to end: render, styles, bench, and the one-line errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from tests.helpers import make_pack, synthetic_frame
from ui.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    make_pack(root / "packs" / "test", styles=("a", "b"), seed=3)
    clip = root / "clip.avi"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 30, (160, 120))
    for i in range(24):
        w.write(synthetic_frame(120, 160, seed=i))
    w.release()
    return root, clip


def decode_count(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def run_cli(*args: str) -> int:
    return main([str(a) for a in args])


def test_render_video_and_image(env, tmp_path, capsys):
    root, clip = env
    out = tmp_path / "out.mkv"
    assert run_cli("render", clip, "-o", out, "--styles", root / "packs", "-q", "--cpu-engine", "eager") == 0
    assert decode_count(out) == 24
    assert "wrote" in capsys.readouterr().out
    img = tmp_path / "in.png"
    cv2.imwrite(str(img), synthetic_frame())
    out_png = tmp_path / "out.png"
    assert run_cli("render", img, "-o", out_png, "--styles", root / "packs", "--style", "b",
                   "--person", "style", "--background", "color:#00ff00", "--no-segmentation") == 0
    res = cv2.imread(str(out_png))
    assert res.shape == (120, 160, 3) and np.abs(res.astype(int) - synthetic_frame()).mean() > 2


def test_styles_json(env, capsys):
    root, _ = env
    assert run_cli("styles", "--styles", root / "packs", "--json") == 0
    styles = json.loads(capsys.readouterr().out)
    assert [s["id"] for s in styles[:2]] == ["a", "b"]
    assert {"id", "name", "pack", "hotkey", "metrics", "teacher"} <= set(styles[0])
    assert styles[0]["hotkey"] == "1"


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.mark.parametrize("make_args,needle", [
    (lambda r, c, t: ["render", t / "missing.mp4", "-o", t / "o.mkv"], "missing.mp4: no such file"),
    (lambda r, c, t: ["render", _not_video(t), "-o", t / "o.mkv"], "not a video"),
    (lambda r, c, t: ["render", c, "-o", t / "o.mkv", "--size", "640by480"], "--size"),
    (lambda r, c, t: ["render", c, "-o", t / "nodir" / "o.mkv"], "does not exist"),
    (lambda r, c, t: ["render", c, "-o", t / "o.txt"], "expected a file ending in"),
    (lambda r, c, t: ["render", c, "-o", t / "o.mkv", "--styles", _corrupt_pack(t)], "model.safetensors"),
    (lambda r, c, t: ["render", c, "-o", t / "o.mkv", "--styles", r / "packs", "--style", "nope"], "no such style"),
    (lambda r, c, t: ["render", c, "-o", t / "o.mkv", "--person", "sparkles"], "--person"),
    (lambda r, c, t: ["render", "7", "-o", t / "o.mkv"], "camera"),
])
def test_bad_input_is_one_line(env, tmp_path, capsys, make_args, needle):
    root, clip = env
    assert run_cli(*make_args(root, clip, tmp_path)) == 2
    line = _error_line(capsys)
    assert line.startswith("stylecam: error:") and needle in line


def test_unwritable_output_checked_before_processing(env, tmp_path, capsys, monkeypatch):
    root, clip = env
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.access(ro, os.W_OK):  # running as root: make the permission check see what a user would
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, m, **kw: False if Path(p) == ro and m == os.W_OK
                            else real(p, m, **kw))
    opened = []
    import realtime.render as render_mod

    monkeypatch.setattr(render_mod, "open_source", lambda *a, **k: opened.append(a))
    assert run_cli("render", clip, "-o", ro / "o.mkv", "--styles", root / "packs") == 2
    assert "not writable" in _error_line(capsys)
    assert not opened  # refused before any processing started


def _not_video(t: Path) -> Path:
    p = t / "notes.mp4"
    p.write_text("this is not a video")
    return p


def _corrupt_pack(t: Path) -> Path:
    d = make_pack(t / "broken", styles=("x",))
    (d / "model.safetensors").write_bytes(b"\0" * 10)
    return d


def test_ctrl_c_during_render_finalizes_the_video(env, tmp_path):
    root, _ = env
    clip = tmp_path / "long.avi"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 30, (320, 240))
    for i in range(600):
        w.write(synthetic_frame(240, 320, seed=i % 7))
    w.release()
    out = tmp_path / "partial.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "ui.cli", "render", str(clip), "-o", str(out), "--styles",
                             str(root / "packs"), "--cpu-engine", "eager", "--preset", "person"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or out.stat().st_size < 20_000):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-500:]
    assert "interrupted" in stdout
    n = decode_count(out)
    assert 0 < n < 600


def test_bench_json(env, tmp_path):
    root, clip = env
    out = tmp_path / "bench.json"
    assert run_cli("bench", "--source", clip, "--size", "160x120", "--frames", "12", "--warmup", "2",
                   "--json", out, "--styles", root / "packs", "--person", "style", "--background", "blur",
                   "--no-engine-compare") == 0
    res = json.loads(out.read_text())
    for key in ("fps_median", "latency_ms_p50", "latency_ms_p95", "stages_ms", "backend", "machine",
                "versions", "commit", "cpu_backend_comparison", "first_frame_s"):
        assert key in res
    assert res["fps_median"] > 0 and res["latency_ms_p95"] >= res["latency_ms_p50"] > 0
    assert res["stages_ms"]["segment"] > 0 and res["backend"] == "cpu"


def test_bench_without_styles_times_an_untrained_student(env, tmp_path, monkeypatch, capsys):
    import realtime.styles as styles

    monkeypatch.setattr(styles, "SHIPPED_STYLES", tmp_path / "none")
    _, clip = env
    out = tmp_path / "bench.json"
    assert run_cli("bench", "--source", clip, "--size", "160x120", "--frames", "10", "--warmup", "1",
                   "--json", out, "--no-engine-compare") == 0
    res = json.loads(out.read_text())
    assert res["student"].startswith("untrained") and res["stages_ms"]["stylize"] > 0
    assert "no styles installed" in capsys.readouterr().err
