"""The norm reference: agrees with the student's op, selects/blends style rows, validates input."""

import pytest
import torch
import torch.nn.functional as F

from kernels import reference as ref
from kernels.errors import KernelInputError
from tests.kernels._helpers import assert_close


def test_student_op_is_the_reference_and_matches_the_spec():
    # norm_rows (F.instance_norm, what every student layer runs) against cond_instance_norm's own statistics.
    from realtime import student

    assert student._norm_impl is ref.norm_rows
    x = torch.randn(2, 5, 9, 7)
    g, b = torch.randn(2, 5), torch.randn(2, 5)
    res = torch.randn(2, 5, 9, 7)
    for act in ("relu", "leaky", None):
        want = ref.cond_instance_norm(x, g, b, None, act, res)
        assert_close(ref.norm_rows(x, g, b, act, res, 1e-5), want, 1e-5, 1e-5, name=f"act={act}")
        half = ref.norm_rows(x.half(), g.half(), b.half(), act, res.half(), 1e-5)
        assert half.dtype == torch.float16
        assert_close(half, ref.cond_instance_norm(x.half(), g.half(), b.half(), None, act, res.half()),
                     2e-3, 2e-3, name=f"fp16 act={act}")
    x = torch.tensor([[[[1.0, -1.0], [-1.0, 1.0]]]])  # mean 0, variance 1: normalising keeps it
    s = ref.LEAKY_SLOPE
    assert_close(ref.norm_rows(x, torch.ones(1, 1), torch.zeros(1, 1), "leaky", None, 0.0),
                 torch.tensor([[[[1.0, -s], [-s, 1.0]]]]), 1e-5, 1e-5, name="leaky slope")


def test_index_and_weights_select_rows():
    x = torch.randn(3, 4, 6, 6)
    bank_g, bank_b = torch.randn(5, 4), torch.randn(5, 4)
    idx = torch.tensor([4, 0, 2])
    y_idx = ref.cond_instance_norm(x, bank_g, bank_b, idx, None)
    y_rows = ref.cond_instance_norm(x, bank_g[idx], bank_b[idx], None, None)
    assert_close(y_idx, y_rows, 1e-6, name="index = rows")
    w = torch.tensor([[0.25, 0.75, 0, 0, 0]] * 3)
    y_w = ref.cond_instance_norm(x, bank_g, bank_b, w, None)
    mix_g, mix_b = 0.25 * bank_g[0] + 0.75 * bank_g[1], 0.25 * bank_b[0] + 0.75 * bank_b[1]
    want = F.instance_norm(x) * mix_g[None, :, None, None] + mix_b[None, :, None, None]
    assert_close(y_w, want, 1e-5, 1e-5, name="blend")


def test_smoothing_blends_statistics():
    x = torch.randn(1, 2, 5, 5) * 3 + 2
    g, b = torch.ones(1, 2), torch.zeros(1, 2)
    _, s0 = ref.cond_instance_norm(x, g, b, None, None, momentum=0.5)
    assert_close(s0[0], x.mean((2, 3)), 1e-6)
    prev = (torch.zeros(1, 2), torch.ones(1, 2))
    _, s1 = ref.cond_instance_norm(x, g, b, None, None, stats_state=prev, momentum=0.5)
    assert_close(s1[0], 0.5 * x.mean((2, 3)), 1e-6)
    assert_close(s1[1], 0.5 + 0.5 * x.var((2, 3), unbiased=False), 1e-5)


@pytest.mark.parametrize("kwargs,match", [
    (dict(x=torch.zeros(2, 3, 4)), "x: expected shape"),
    (dict(x=torch.zeros(1, 3, 4, 4, dtype=torch.float64)), "x: expected dtype"),
    (dict(style_idx=torch.tensor([0.5])), r"style_idx: expected weights \[1, 2\]"),
    (dict(style_idx=torch.tensor([[0, 1]])), r"style_idx: expected indices \[1\]"),
    (dict(style_idx=torch.tensor([-1])), "style_idx: expected indices in 0..1"),
    (dict(act="gelu"), "act: expected"),
    (dict(residual=torch.zeros(1, 3, 4, 5)), "residual: expected"),
    (dict(gamma=torch.zeros(2, 3, device="meta")), "gamma: expected a tensor on cpu"),
    (dict(stats_state=(torch.zeros(1, 3), torch.zeros(1, 3)), momentum=None), "stats_state: given without"),
    (dict(stats_state=(torch.zeros(1, 3), torch.zeros(1, 4)), momentum=0.5), r"stats_state\[1\]: expected"),
    (dict(momentum=1.5), "momentum: expected a number in"),
    (dict(eps=0.0), "eps: expected a positive number"),
])
def test_bad_input(kwargs, match):
    args = dict(x=torch.zeros(1, 3, 4, 4), gamma=torch.ones(2, 3), beta=torch.zeros(2, 3),
                style_idx=torch.tensor([1]), act="relu") | kwargs
    with pytest.raises(KernelInputError, match=match):
        ref.cond_instance_norm(**args)


def test_errors_are_value_errors():
    assert issubclass(KernelInputError, ValueError)
