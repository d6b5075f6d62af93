"""The known-answer benchmark's paired fits: what a map or LUT fitted with the answer in hand reaches."""

import cv2
import skimage.data
import torch

from training.learn_bench import _ceilings, grade


def _frames():
    pics = [skimage.data.astronaut(), skimage.data.coffee()]
    return [torch.from_numpy(cv2.resize(p, (64, 48), interpolation=cv2.INTER_AREA)).permute(2, 0, 1)[None].float() / 255
            for p in pics]


def test_a_per_picture_quadratic_map_nearly_reproduces_a_global_grade():
    xs = _frames()
    ys = [grade(x) for x in xs]
    c = _ceilings(xs, ys, xs, ys, steps=0, seed=0)
    assert set(c) == {"quadratic_map_per_picture"}  # no LUT fits without steps
    assert c["quadratic_map_per_picture"] > 0.8


def test_the_lut_fits_are_reported_separately_and_the_held_out_fit_is_the_ceiling():
    xs = _frames()
    ys = [grade(x) for x in xs]
    c = _ceilings(xs[:1], ys[:1], xs[1:], ys[1:], steps=40, seed=0)
    assert set(c) == {"lut_fitted_to_content_pairs", "lut_fitted_on_held_out", "quadratic_map_per_picture"}
    assert c["lut_fitted_on_held_out"] > 0.0
