"""kernels.benchmarks: counted byte ratios meet the targets; JSON carries provenance; CLI errors are one line."""

import json

import pytest
import torch

from kernels import benchmarks as bench


def test_byte_counter_counts_reads_and_writes_not_views():
    x = torch.empty(4, 8, device="meta")
    assert bench.count_bytes(lambda: x.t().unsqueeze(0)) == 0  # views move nothing
    assert bench.count_bytes(lambda: x + 1) == 2 * 4 * 8 * 4  # read x, write the sum
    row = torch.empty(8, device="meta")
    assert bench.count_bytes(lambda: x * row.expand(4, 8)) == (32 + 8 + 32) * 4  # broadcast counted once


def test_json_analytic_meets_targets(tmp_path):
    out = tmp_path / "k.json"
    assert bench.main(["--json", str(out)]) == 0
    d = json.loads(out.read_text())
    for key in ("machine", "versions", "commit", "created_utc", "dispatch", "analytic"):
        assert key in d
    a = d["analytic"]
    assert a["norm"]["ratio"] >= 2.5 and a["composite"]["ratio"] >= 3.0
    for key in ("norm", "composite", "lut_delta"):
        v = a[key]
        assert v["ratio"] == round(v["unfused_bytes"] / v["fused_bytes"], 3)
    if not torch.cuda.is_available():
        assert d["timings"] is None and "no CUDA" in d["timings_skipped"]


def test_cpu_timing_path_runs(tmp_path):
    out = tmp_path / "k.json"
    bench.main(["--json", str(out), "--device", "cpu", "--sizes", "32x16", "--reps", "2", "--warmup", "0"])
    t = json.loads(out.read_text())["timings"]["32x16"]
    assert t["norm"]["reference"]["median_ms"] > 0 and t["composite"]["reference"]["GB_per_s"] > 0
    assert t["lut_delta"]["reference"]["median_ms"] > 0 and t["lut_delta"]["lut_dim"] == bench.LUT_DIM


def test_lut_baseline_is_the_grid_sample_path():
    """The timed baseline computes the same change as the reference the kernel is tested against."""
    from kernels import reference as ref

    frame, lut = bench._lut_inputs(9, 14, "cpu", make=torch.rand)
    got = bench.unfused_lut_delta(frame, lut, 0.7, torch.float32)
    assert torch.allclose(got, ref.lut_delta(frame, lut, 0.7), atol=1e-6)
    assert bench.fused_lut_delta_bytes(10, 20) == 10 * 20 * 3 + 3 * 10 * 20 * 2 + 3 * bench.LUT_DIM ** 3 * 4


@pytest.mark.parametrize("argv,msg", [(["--sizes", "huge"], "--sizes"), (["--reps", "0"], "--reps"),
                                      (["--json", "/nonexistent-dir/x.json"], "--json")])
def test_cli_errors(argv, msg, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(argv)
    assert exc.value.code == 2 and msg in capsys.readouterr().err
