import numpy as np
import pytest
import torch

from realtime.colormap import (MapApplier, apply_map, apply_map_rgb, apply_map_torch, blend_maps, check_map,
                               fit_map, identity_map)


def _look(seed=0, scale=0.15):
    """A smooth, invertible-ish quadratic look (a warm tone curve with a little channel mixing)."""
    rng = np.random.default_rng(seed)
    m = identity_map() * 0.8
    m += rng.normal(0, scale, m.shape)
    m[9] = [0.08, 0.05, 0.02]
    return m


def _pixels(n=4000, seed=1):
    return np.random.default_rng(seed).uniform(0.05, 0.95, (n, 3))


def test_fit_recovers_a_known_quadratic_look():
    m = _look()
    x = _pixels()
    y = x @ np.zeros((3, 3)) + apply_map_rgb(m, x)
    fit = fit_map(x, y, ridge=0.0, clip=0.0)
    np.testing.assert_allclose(fit, m, atol=1e-9)
    # with the default (small) ridge the recovered look is still close
    fit = fit_map(x, y)
    assert np.abs(apply_map_rgb(fit, x) - y).max() < 0.01


def test_fit_ignores_clipped_pixels():
    m = _look(2)
    x = _pixels(6000, 3)
    y = apply_map_rgb(m, x)
    x2, y2 = x.copy(), y.copy()
    x2[:1500] = 1.0        # blown-out highlights in the keyframe
    y2[1500:2500] = 0.0    # the teacher crushed some shadows to black
    fit = fit_map(x2, y2, ridge=1e-6)
    probe = _pixels(500, 4)
    assert np.abs(apply_map_rgb(fit, probe) - apply_map_rgb(m, probe)).max() < 2e-3
    # without the exclusion the same data would bend the map far off
    naive = fit_map(x2, y2, ridge=1e-6, clip=-1.0)
    assert np.abs(apply_map_rgb(naive, probe) - apply_map_rgb(m, probe)).max() > 0.05


def test_flat_frame_stays_near_its_prior():
    prior = _look(5, 0.05)
    colour = np.array([[0.4, 0.5, 0.6]])
    x = np.repeat(colour, 3000, 0) + np.random.default_rng(0).normal(0, 1e-3, (3000, 3))
    y = np.repeat([[0.5, 0.45, 0.3]], 3000, 0)
    fit = fit_map(x, y, prior=prior)
    assert np.isfinite(fit).all()
    probe = _pixels(500, 6)
    # at the colour the map follows the teacher; elsewhere it moves no further from the prior than
    # that one colour asks (no wild extrapolation from ten nearly collinear terms)
    asked = np.abs(np.array([[0.5, 0.45, 0.3]]) - apply_map_rgb(prior, colour)).max()
    assert np.abs(apply_map_rgb(fit, colour) - [[0.5, 0.45, 0.3]]).max() < 0.03
    assert np.abs(apply_map_rgb(fit, probe) - apply_map_rgb(prior, probe)).max() < 1.5 * asked
    # an all-NaN target changes nothing
    np.testing.assert_array_equal(fit_map(x, np.full_like(y, np.nan), prior=prior), prior)


def test_blend():
    a, b = identity_map(), _look()
    np.testing.assert_allclose(blend_maps(a, b, 0.5), (a + b) / 2)
    np.testing.assert_allclose(blend_maps(a, b, 1.0), b)


@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 13, 3), (480, 640, 3)])
def test_uint8_apply_matches_the_reference(shape):
    m = _look(7, 0.3)
    f = np.random.default_rng(8).integers(0, 256, shape, dtype=np.uint8)
    out = apply_map(m, f)
    ref = np.rint(apply_map_rgb(m, f[..., ::-1] / 255.0)[..., ::-1] * 255)
    assert out.dtype == np.uint8 and out.shape == f.shape
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1
    assert np.array_equal(MapApplier(identity_map())(f), f)


def test_torch_apply_matches_the_reference():
    m = _look(9, 0.3)
    x = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    y = apply_map_torch(m, x)
    ref = apply_map_rgb(m, x.permute(0, 2, 3, 1).double().numpy())
    np.testing.assert_allclose(y.permute(0, 2, 3, 1).numpy(), ref, atol=1e-5)


def test_check_map_names_the_problem():
    with pytest.raises(ValueError, match="10 rows"):
        check_map(np.zeros((3, 3)), "guide.default_map")
    with pytest.raises(ValueError, match="NaN"):
        check_map(np.full((10, 3), np.nan))
