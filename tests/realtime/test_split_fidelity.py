import numpy as np

from realtime.benchmarks.split_fidelity import fidelity, held_out_pictures, style_fidelity
from realtime.styles import StyleRegistry
from tests.helpers import make_pack, synthetic_frame


def test_fidelity_is_one_for_the_full_result_and_zero_for_no_change():
    x = np.zeros((4, 4, 3), np.uint8)
    full = np.full((4, 4, 3), 100, np.uint8)
    assert fidelity(full, full, x) == 1.0
    assert fidelity(x, full, x) == 0.0
    assert 0.4 < fidelity(np.full((4, 4, 3), 50, np.uint8), full, x) < 0.6


def test_bf16_student_stays_close_on_a_picture(tmp_path):
    make_pack(tmp_path / "p", styles=("a", "b"), seed=3)
    reg = StyleRegistry([str(tmp_path)], include_user=False, include_shipped=False)
    out = style_fidelity(reg.packs["p"], 1, {"frame": synthetic_frame(120, 160)}, (80, 60))
    assert 0.9 < out["frame"] <= 1.0


def test_held_out_pictures_are_frames():
    pics = held_out_pictures()
    assert set(pics) == {"camera", "grace_hopper", "motorcycle_left", "hubble_deep_field"}
    assert all(p.shape == (480, 640, 3) and p.dtype == np.uint8 for p in pics.values())
