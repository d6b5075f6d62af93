"""CPU engine start-up: a cached torch.compile choice must not hold back the first frame."""

from __future__ import annotations

import threading

import numpy as np

from realtime import stylizer
from realtime.styles import load_pack
from tests.helpers import make_pack


class _SlowCompile(stylizer.EagerEngine):
    """Stands in for torch.compile: right answers, but the first call takes a while."""

    name = "compile"
    started = threading.Event()
    release = threading.Event()  # the test lets the "compile" finish only after the first frame
    finished = threading.Event()

    def __call__(self, x, w):
        if not getattr(self, "_warm", False):
            _SlowCompile.started.set()
            _SlowCompile.release.wait(30)
            self._warm = True
            _SlowCompile.finished.set()
        return super().__call__(x, w)


def test_cached_compile_choice_serves_frames_at_once_and_swaps_in_later(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    real = stylizer.make_cpu_engine
    monkeypatch.setattr(stylizer, "make_cpu_engine",
                        lambda kind, net, h, w: _SlowCompile(net) if kind == "compile" else real(kind, net, h, w))
    pack = load_pack(make_pack(tmp_path / "pack"))
    net = pack.build()
    key = stylizer.engine_cache_key(net, 24, 32)
    stylizer.save_engine_choice(key, {"eager_ms": 9.0, "compile_ms": 4.0, "onnxruntime_ms": 5.0, "chosen": "compile"})

    runner = stylizer.PackRunner(pack, "cpu", 24, 32)
    x = np.random.default_rng(0).random((1, 3, 24, 32), dtype=np.float32)
    rows = np.array([0.0, 1.0], np.float32)
    first = runner.run(x, rows)
    assert not _SlowCompile.finished.is_set()  # the first frame did not wait for the compile
    assert runner.engine.name == "onnxruntime"  # measured here, and ready at once
    assert _SlowCompile.started.wait(30)
    _SlowCompile.release.set()
    runner.close()
    assert runner.engine.name == "compile" and "fastest measured" in runner.engine_reason
    np.testing.assert_allclose(runner.run(x, rows), first, atol=1e-4)  # same student, other engine


def test_background_compile_shortens_the_switch_interval_and_restores_it():
    import sys

    from realtime.stylizer import background_compile

    before = sys.getswitchinterval()
    with background_compile():
        assert sys.getswitchinterval() <= 0.0005
        with background_compile():  # two packs compiling at once
            pass
        assert sys.getswitchinterval() <= 0.0005  # still compiling
    assert sys.getswitchinterval() == before
