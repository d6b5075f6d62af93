"""The `stylecam` command line end to end: render, styles, bench, and the one-line errors."""

import json
import os
import re
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
    captured = capsys.readouterr()
    assert "wrote" in captured.out and "warning" not in captured.err
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


def _write_clip(path: Path, frames: int, size=(160, 120)) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, size)
    for i in range(frames):
        w.write(synthetic_frame(size[1], size[0], seed=i % 7))
    w.release()
    return path


@pytest.mark.parametrize("sig,code,suffix", [(signal.SIGINT, 130, ".mp4"), (signal.SIGTERM, 143, ".mkv")],
                         ids=["SIGINT", "SIGTERM"])
def test_signal_during_render_finalizes_the_video(env, tmp_path, sig, code, suffix):
    root, _ = env
    clip = _write_clip(tmp_path / "long.avi", 1500)
    out = tmp_path / "out" / f"partial{suffix}"
    out.parent.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "ui.cli", "render", str(clip), "-o", str(out), "--styles",
                             str(root / "packs"), "--cpu-engine", "eager", "--no-segmentation"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The render goes to a temporary file beside the output; signal once it holds encoded frames.
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None and \
                not any(p.stat().st_size > 4000 for p in out.parent.glob("partial.partial-*")):
            time.sleep(0.02)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, stderr[-500:]
    assert "(interrupted; the video written so far is finalized)" in stdout
    n = int(re.search(r"wrote .*: (\d+) frame", stdout).group(1))
    assert 0 < n < 1500
    assert decode_count(out) == n  # every frame it reports is in the file and decodes
    with av.open(str(out)) as c:
        assert c.duration is not None and c.duration > 0  # finalized: the trailer is written
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # the temporary file became the output


@pytest.mark.parametrize("how", ["same path", "symlink", "hard link"])
def test_render_refuses_an_output_that_is_the_input(env, tmp_path, capsys, how):
    root, clip = env
    src = tmp_path / "same.mkv"  # an MJPG AVI under a .mkv name: inputs are read by their contents
    src.write_bytes(clip.read_bytes())
    out = {"same path": src, "symlink": tmp_path / "link.mkv", "hard link": tmp_path / "hard.mkv"}[how]
    if how == "symlink":
        out.symlink_to(src)
    elif how == "hard link":
        os.link(src, out)
    before = src.read_bytes()
    assert run_cli("render", src, "-o", out, "--styles", root / "packs", "-q", "--cpu-engine", "eager") == 2
    line = _error_line(capsys)
    assert line.startswith("stylecam: error:") and str(out) in line and "is the input file" in line
    assert src.read_bytes() == before


def _fail_on_frame(monkeypatch, k: int) -> None:
    """Make the pipeline raise on its k-th frame (1-based), as a bug or a failing device would."""
    from realtime.pipeline import Pipeline

    real, count = Pipeline.process, [0]

    def process(self, frame, *a, **kw):
        count[0] += 1
        if count[0] == k:
            raise RuntimeError("simulated failure")
        return real(self, frame, *a, **kw)

    monkeypatch.setattr(Pipeline, "process", process)


def test_failed_render_leaves_an_existing_output_untouched(env, tmp_path, monkeypatch):
    root, clip = env
    out = tmp_path / "out.mkv"
    out.write_bytes(b"an earlier render the user keeps")
    _fail_on_frame(monkeypatch, 1)
    with pytest.raises(RuntimeError, match="simulated"):
        run_cli("render", clip, "-o", out, "--styles", root / "packs", "-q", "--cpu-engine", "eager")
    assert out.read_bytes() == b"an earlier render the user keeps"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mkv"]  # no temporary file left behind


def test_render_stopped_by_an_error_keeps_what_it_finished(env, tmp_path, monkeypatch):
    root, clip = env
    out = tmp_path / "out.mp4"
    out.write_bytes(b"older")
    _fail_on_frame(monkeypatch, 6)
    with pytest.raises(RuntimeError, match="simulated"):
        run_cli("render", clip, "-o", out, "--styles", root / "packs", "-q", "--cpu-engine", "eager")
    assert decode_count(out) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_truncated_input_warns_with_frames_promised_and_delivered(env, tmp_path, capsys):
    root, _ = env
    full = _write_clip(tmp_path / "full.avi", 30)
    cut = tmp_path / "cut.avi"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])  # still opens: the header promises 30 frames
    out = tmp_path / "out.mkv"
    assert run_cli("render", cut, "-o", out, "--styles", root / "packs", "-q", "--cpu-engine", "eager",
                   "--no-segmentation") == 0
    warning = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("stylecam: warning:")]
    assert len(warning) == 1 and str(cut) in warning[0], warning
    m = re.search(r"promised (\d+) frames but only (\d+)", warning[0])
    assert m and int(m.group(1)) == 30 and int(m.group(2)) == decode_count(out) < 30


def test_unsupported_container_suggests_only_recordable_ones(env, tmp_path, capsys):
    from realtime.sinks import CONTAINERS

    _, clip = env
    assert run_cli("render", clip, "-o", tmp_path / "x.avi") == 2
    line = _error_line(capsys)
    suggested = re.findall(r"\.\w+", line.split("ending in", 1)[1])
    assert suggested and set(suggested) <= set(CONTAINERS), line


@pytest.mark.parametrize("argv", [["live", "-v"], ["-v", "live"], ["render", "in.mp4", "-o", "o.mkv", "--verbose"],
                                  ["styles", "-v"], ["distill", "--data", "d", "--out", "o", "-v"],
                                  ["-v", "distill", "--data", "d", "--out", "o"]])
def test_global_flags_go_before_or_after_the_command(argv):
    from ui.cli import build_parser

    assert build_parser().parse_args(argv).verbose is True
    without = [a for a in argv if a not in ("-v", "--verbose")]
    assert build_parser().parse_args(without).verbose is False


def test_a_broken_training_cli_is_an_error_not_missing_commands(monkeypatch):
    from ui.cli import build_parser

    assert "distill" in build_parser()._subparsers._group_actions[0].choices
    monkeypatch.setitem(sys.modules, "ui.cli_training", None)  # importing it now raises ImportError
    with pytest.raises(ImportError):
        build_parser()


def test_refused_distill_leaves_no_folder(tmp_path, capsys):
    teacher = tmp_path / "teacher.pth"
    teacher.write_bytes(np.random.default_rng(1).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    data = tmp_path / "data"
    data.mkdir()
    cv2.imwrite(str(data / "a.png"), synthetic_frame())
    out = tmp_path / "pack"
    assert run_cli("distill", "--teacher", teacher, "--data", data, "--out", out, "--steps", "2") == 2
    assert "not a PyTorch checkpoint" in _error_line(capsys)
    assert not out.exists()


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
