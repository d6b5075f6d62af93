import numpy as np
import pytest
import skimage.data
import cv2

from realtime.composite import Treatment
from realtime.errors import InputError
from realtime.pipeline import Pipeline, PipelineConfig
from tests.helpers import make_pack, synthetic_frame


@pytest.fixture(scope="module")
def packs(tmp_path_factory):
    root = tmp_path_factory.mktemp("packs")
    make_pack(root / "one", styles=("a", "b"), seed=1)
    make_pack(root / "two", styles=("c",), seed=2)
    return root


@pytest.fixture(scope="module")
def portrait():
    return cv2.resize(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR), (320, 240))


def cfg(packs, **kw):
    kw.setdefault("cpu_engine", "eager")
    kw.setdefault("split_precision", "fp32")  # the bfloat16 path compiles; its own tests stub the compiler
    return PipelineConfig(styles_dirs=[str(packs)], include_user_styles=False, include_shipped_styles=False, **kw)


def test_process_all_preset_runs_one_pass_without_segmentation(packs):
    with Pipeline(cfg(packs)) as p:
        calls = []
        orig = p.stylizer.delta
        p.stylizer.delta = lambda f, m, *a: calls.append(m) or orig(f, m, *a)
        out, st = p.process(synthetic_frame())
        assert out.shape == (120, 160, 3) and out.dtype == np.uint8
        assert not st.segmented and len(calls) == 1
        assert st.stylize_ms > 0 and st.total_ms >= st.stylize_ms
        assert np.abs(out.astype(int) - synthetic_frame().astype(int)).mean() > 2


def test_person_only_keeps_background(packs, portrait):
    with Pipeline(cfg(packs, person=Treatment("style"), background=Treatment("original"))) as p:
        for _ in range(3):
            out, st = p.process(portrait)
    assert st.segmented and st.segment_ms > 0
    diff = np.abs(out.astype(int) - portrait.astype(int)).sum(-1)
    assert diff[5:40, 5:40].mean() < 2  # top-left corner is background
    assert diff[40:90, 130:190].mean() > 10  # the face is stylized


def test_split_uses_two_styles(packs, portrait):
    with Pipeline(cfg(packs)) as p:
        p.set_preset("split")
        calls = []
        orig = p.stylizer.delta
        p.stylizer.delta = lambda f, m, *a: calls.append(m) or orig(f, m, *a)
        p.process(portrait)
    assert [list(m) for m in calls] == [["one/a"], ["one/b"]]


def test_split_prepares_the_frame_once(packs, portrait, monkeypatch):
    import realtime.stylizer as stylizer

    sizes = []
    orig = stylizer.prepare
    monkeypatch.setattr(stylizer, "prepare", lambda f, size: sizes.append(size) or orig(f, size))
    with Pipeline(cfg(packs)) as p:
        p.set_preset("split")
        p.process(portrait)
    assert sizes == [(160, 120)]


def test_blur_background_and_colour(packs, portrait):
    with Pipeline(cfg(packs, person=Treatment("original"), background=Treatment("color", color=(0, 255, 0)))) as p:
        out, _ = p.process(portrait)
    assert out[10, 10].tolist() == [0, 255, 0]
    assert np.abs(out[45:70, 130:160].astype(int) - portrait[45:70, 130:160]).mean() < 3
    with Pipeline(cfg(packs, person=Treatment("original"), background=Treatment("blur", blur=15))) as p:
        out, _ = p.process(portrait)
    # the flag's stripes (top-left) are smoothed away
    assert out[20:60, 0:40].std() < portrait[20:60, 0:40].std()


def test_strength_zero_and_mirror(packs):
    f = synthetic_frame()
    with Pipeline(cfg(packs, strength=0.0)) as p:
        out, _ = p.process(f)
        assert (out == f).all()
        p.set_mirror(True)
        out, _ = p.process(f)
        assert (out == f[:, ::-1]).all()


def test_crossfade_and_mix(packs):
    now = [0.0]
    with Pipeline(cfg(packs, crossfade_ms=300)) as p:
        p.stylizer.clock = lambda: now[0]
        f = synthetic_frame()
        a, _ = p.process(f)
        p.set_style("two/c")
        mid, _ = p.process(f)  # t = 0: still style a
        assert (mid == a).all()
        now[0] = 0.15
        mid, _ = p.process(f)
        now[0] = 1.0
        c, _ = p.process(f)
        d_a, d_c = np.abs(mid.astype(int) - a).mean(), np.abs(mid.astype(int) - c).mean()
        assert d_a > 1 and d_c > 1  # halfway: neither endpoint
        p.set_style_mix({"a": 1, "b": 1}, crossfade=False)
        ab, _ = p.process(f)
        assert np.abs(ab.astype(int) - a).mean() > 1


def test_bad_inputs(packs, tmp_path):
    with pytest.raises(InputError, match="no styles are installed"):
        Pipeline(PipelineConfig(include_user_styles=False, include_shipped_styles=False))
    with pytest.raises(InputError, match="no such style"):
        Pipeline(cfg(packs, style="zzz"))
    with pytest.raises(InputError, match="--strength"):
        Pipeline(cfg(packs, strength=2))
    with Pipeline(cfg(packs)) as p:
        with pytest.raises(InputError, match="uint8"):
            p.process(np.zeros((10, 10), np.float32))
    # Without styles, non-style treatments still work.
    with Pipeline(PipelineConfig(include_user_styles=False, include_shipped_styles=False,
                                 person=Treatment("original"), background=Treatment("blur"))) as p:
        out, _ = p.process(synthetic_frame())
        assert out.shape == (120, 160, 3)


def test_device_path_matches_cpu_path(packs, portrait):
    """The GPU frame path, run with the kernels' references on CPU tensors, agrees with the CPU path."""
    for person, background in [(Treatment("style"), Treatment("original")),
                                (Treatment("original"), Treatment("color", color=(10, 200, 30))),
                                (Treatment("style"), Treatment("style"))]:
        outs = []
        for device_path in (False, True):
            with Pipeline(cfg(packs, person=person, background=background, device_path=device_path,
                              mask_smoothing=0.0)) as p:
                out, st = p.process(portrait)
                outs.append(out.astype(int))
        diff = np.abs(outs[0] - outs[1])
        # Resampling differs slightly (INTER_AREA vs bilinear downscale); the picture must agree.
        assert diff.mean() < 4 and np.percentile(diff, 99) < 40, (person, background, diff.mean())


def test_device_path_blur(packs, portrait):
    with Pipeline(cfg(packs, person=Treatment("original"), background=Treatment("blur", blur=15),
                      device_path=True)) as p:
        out, st = p.process(portrait)
    assert st.segmented and out.shape == portrait.shape
    assert out[20:60, 0:40].std() < portrait[20:60, 0:40].std()
    assert np.abs(out[45:70, 130:160].astype(int) - portrait[45:70, 130:160]).mean() < 3


@pytest.fixture
def no_compile(monkeypatch):
    """torch.compile as the identity: the bfloat16 engine's numerics without seconds of compiling."""
    import torch

    monkeypatch.setattr(torch, "compile", lambda module, **kw: module)


def test_split_background_in_bf16_stays_close_to_fp32(packs, portrait, no_compile, monkeypatch):
    import realtime.stylizer as stylizer

    # Which engine is faster is measured; here bfloat16 always "wins", so its numerics are what run.
    monkeypatch.setattr(stylizer, "time_engine", lambda engine, *a, **k: 1.0 if engine.name == "compile-bf16" else 2.0)
    outs = {}
    for precision in ("fp32", "bf16"):
        with Pipeline(cfg(packs, split_precision=precision, mask_smoothing=0.0)) as p:
            p.set_preset("split")
            outs[precision], st = p.process(portrait)
            engines = p.stylizer.engines()
            comparisons = p.stylizer.comparisons()
    assert st.segmented
    assert set(engines) == {"one@160x120", "one@160x120 bf16"}
    cmp = comparisons["one@160x120 bf16"]  # timed against the fp32 engine; the faster one runs
    assert cmp["chosen"] == "compile-bf16" and cmp["compile-bf16_ms"] < cmp["eager_ms"]
    assert engines["one@160x120 bf16"] == "compile-bf16"
    full, cheap, x = (a.astype(float) for a in (outs["fp32"], outs["bf16"], portrait))
    off = np.linalg.norm(cheap - full) / np.linalg.norm(full - x)  # 1 - fidelity to the fp32 frame
    assert 0 < off < 0.05, off


def test_bf16_engine_matches_fp32_student(packs, no_compile):
    from realtime.styles import StyleRegistry
    from realtime.stylizer import CompileBf16Engine, EagerEngine

    pack = StyleRegistry([str(packs)], include_user=False, include_shipped=False).packs["one"]
    x = np.random.default_rng(0).random((1, 3, 48, 64), dtype=np.float32)
    w = np.array([[0.0, 1.0]], np.float32)
    ref = EagerEngine(pack.build())(x, w)
    y = CompileBf16Engine(pack.build())(x, w)
    assert y.dtype == np.float32 and y.shape == ref.shape
    change = np.linalg.norm(ref - x)
    assert np.linalg.norm(y - ref) < 0.05 * change  # random weights: within 5 % of the change (shipped: ~0.7 %)


def test_split_bf16_first_frames_run_on_the_fp32_engine(packs, portrait, no_compile):
    """With the engine chosen automatically, the bfloat16 student is compiled and timed off the frame thread."""
    with Pipeline(cfg(packs, cpu_engine="auto", split_precision="bf16")) as p:
        p.set_preset("split")
        p.process(portrait)
        p.stylizer.wait_ready()
        out, st = p.process(portrait)
        assert st.segmented and out.shape == portrait.shape
        assert "one@160x120 bf16" in p.stylizer.comparisons()


def test_split_precision_is_checked(packs):
    with pytest.raises(InputError, match="--split-precision"):
        Pipeline(cfg(packs, split_precision="int8"))
    with pytest.raises(InputError, match="CPU backend"):
        Pipeline(cfg(packs, split_precision="bf16", device_path=True))
    with Pipeline(cfg(packs, split_precision="auto", device_path=True)) as p:
        assert p.split_precision == "fp32"


def test_auto_split_precision_keeps_an_explicit_cpu_engine(packs, monkeypatch):
    """bfloat16 is a compiled engine: with --cpu-engine set, auto keeps the split in fp32 on that engine
    (and never compiles on the frame thread)."""
    import realtime.pipeline as pipeline

    monkeypatch.setattr(pipeline, "native_bf16", lambda: True)
    with Pipeline(cfg(packs, cpu_engine="eager", split_precision="auto")) as p:
        assert p.split_precision == "fp32"
    with Pipeline(cfg(packs, cpu_engine="auto", split_precision="auto")) as p:
        assert p.split_precision == "bf16"


def test_split_bf16_measured_slower_is_not_compiled_again(packs, portrait, no_compile, monkeypatch, tmp_path):
    import realtime.stylizer as stylizer

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing measured by other tests

    monkeypatch.setattr(stylizer, "time_engine", lambda engine, *a, **k: 2.0 if engine.name == "compile-bf16" else 1.0)
    with Pipeline(cfg(packs, cpu_engine="auto", split_precision="bf16")) as p:
        p.set_preset("split")
        p.process(portrait)
        p.stylizer.wait_ready()
        assert p.stylizer.comparisons()["one@160x120 bf16"]["chosen"] != "compile-bf16"
    compiled = []
    monkeypatch.setattr(stylizer, "CompileBf16Engine", lambda net: compiled.append(net))
    with Pipeline(cfg(packs, cpu_engine="auto", split_precision="bf16")) as p:
        p.set_preset("split")
        p.process(portrait)
        p.stylizer.wait_ready()
        assert not compiled and p.stylizer.engines()["one@160x120 bf16"] != "compile-bf16"
