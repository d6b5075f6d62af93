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
