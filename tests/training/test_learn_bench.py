"""The known-answer benchmark's references: paired fits (what a map or LUT fitted with the answer in hand
reaches) and the unpaired quadratic baseline."""

import cv2
import skimage.data
import torch

from realtime.colormap import apply_map_torch
from training.learn_bench import Held, _ceilings, fit_sw_quadratic, grade, score_held


def _frames():
    pics = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket()]
    return [torch.from_numpy(cv2.resize(p, (64, 48), interpolation=cv2.INTER_AREA)).permute(2, 0, 1)[None].float() / 255
            for p in pics]


def test_a_per_picture_quadratic_map_nearly_reproduces_a_global_grade():
    xs = _frames()
    h = Held(["a", "b", "c", "d"], xs, [grade(x) for x in xs])
    c = _ceilings(xs, h.ys, {"reporting": h}, steps=0, seed=0)
    assert set(c) == {"quadratic_map_per_picture"}  # no LUT fits without steps
    r = c["quadratic_map_per_picture"]["reporting"]
    assert r["fidelity_gain"] > 0.8 and r["worst"][1] > 0.7
    assert set(r["per_picture"]) == {"a", "b", "c", "d"}


def test_the_lut_fits_are_reported_per_set_and_the_held_out_fit_is_the_ceiling():
    xs = _frames()
    sets = {"selection": Held(["a"], xs[1:2], [grade(xs[1])]), "reporting": Held(["b"], xs[2:3], [grade(xs[2])])}
    c = _ceilings(xs[:1], [grade(xs[0])], sets, steps=40, seed=0)
    assert set(c) == {"lut_fitted_to_content_pairs", "lut_fitted_on_held_out", "quadratic_map_per_picture"}
    assert set(c["lut_fitted_on_held_out"]) == {"selection", "reporting"}
    assert c["lut_fitted_on_held_out"]["reporting"]["fidelity_gain"] > 0.0


def test_worst_picture_is_named_and_the_pooled_score_counts_every_pixel():
    xs = _frames()[:2]
    ys = [grade(x) for x in xs]
    r = score_held(Held(["good", "bad"], xs, ys), [ys[0], xs[1]])  # exact on one, the identity on the other
    assert r["per_picture"] == {"good": 1.0, "bad": 0.0}
    assert r["worst"] == ["bad", 0.0]
    assert 0.0 < r["fidelity_gain"] < 1.0


def test_the_unpaired_quadratic_baseline_recovers_a_grade_when_both_sides_show_the_same_pictures():
    xs = _frames()
    style = [grade(x.flip(-1)) for x in xs]  # the same pictures mirrored: no pairs, the same colours
    m = fit_sw_quadratic(xs, style, steps=150, seed=0)
    flat = lambda ts: torch.cat([t.flatten() for t in ts])  # noqa: E731
    x, t, y = flat(xs), flat([grade(x) for x in xs]), flat([apply_map_torch(m, x) for x in xs])
    gain = 1 - float((y - t).norm() / (x - t).norm())
    assert gain > 0.6, gain


def test_the_pack_records_the_reporting_sets_numbers(tmp_path):
    import json

    from realtime.styles import StyleRegistry
    from tests.realtime.test_lut import make_lut_pack
    from training.learn_bench import _record
    from ui.gallery import style_tooltip

    xs = _frames()[:2]
    ys = [grade(x) for x in xs]
    h = Held(["a", "b"], xs, ys)
    sets = {"selection": h, "reporting": h}
    one = lambda v: {w: {"fidelity_gain": v, "worst": ["b", v - 0.1], "per_picture": {}} for w in sets}  # noqa: E731
    res = {"look": "grade", "style_side": "style", "learned_unpaired": one(0.42),
           "baselines": {"mean_std_transfer": one(-0.5)}, "ceilings": {"lut_fitted_on_held_out": one(0.9)}}
    pack = make_lut_pack(tmp_path / "learned", styles=("look",), seed=1)
    _record(pack, res, tmp_path, h, ys)
    ka = json.loads((pack / "pack.json").read_text())["styles"][0]["metrics"]["known_answer"]
    assert ka["learned_unpaired"] == 0.42 and ka["learned_worst_picture"] == "b"
    assert ka["baselines"] == {"mean_std_transfer": -0.5} and ka["ceilings"] == {"lut_fitted_on_held_out": 0.9}
    assert (tmp_path / "held_out.jpg").exists()
    tip = style_tooltip(StyleRegistry([tmp_path], include_user=False, include_shipped=False).styles[0])
    assert "learned unpaired 0.42" in tip
