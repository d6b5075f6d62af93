"""The GPU check's own logic on the CPU: its GPU steps are faked or run on CPU tensors.

What needs a GPU (the numbers themselves) is what ``make gpu-check`` measures; here: the one-line
answer without CUDA, step processes with time limits, a failing step not stopping the others, the
report's shape, the verdicts on results shaped as the real steps write them, and the fp16 and
recording steps run for real on the CPU at a small size.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers import make_pack
from ui import gpu_check as gc

PY = sys.executable


def _script_step(name: str, code: str, timeout_s: float = 30, judge=None) -> gc.Step:
    """A step whose child runs ``code`` with the step folder as ``sys.argv[1]``; its result is result.json."""
    return gc.Step(name, f"fake {name}", timeout_s, lambda folder: [PY, "-c", textwrap.dedent(code), str(folder)],
                   lambda folder: gc._read_json(folder / "result.json"),
                   judge or (lambda d: [gc.line(name, gc.PASS if d.get("ok") else gc.FAIL, d.get("value"), "ok")]))


WRITE_OK = """
import json, sys, pathlib
pathlib.Path(sys.argv[1], "result.json").write_text(json.dumps({"ok": True, "value": 7}))
"""


def _pid_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie counts as gone); polls for up to 10 s."""
    for _ in range(100):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


# ---- entry point ----------------------------------------------------------------------------
def test_without_cuda_one_line_exit_0_and_no_report(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(gc, "cuda_status", lambda: (False, "no CUDA device is visible"))
    monkeypatch.setattr(gc, "STEPS", [_script_step("never", "raise SystemExit('must not run')")])
    out = tmp_path / "gpu-check.json"
    assert gc.main(["--json", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == ["gpu-check: no CUDA on this machine (no CUDA device is visible); nothing to check, "
                     "no report written"]
    assert not out.exists()


def test_broken_cuda_is_a_one_line_failure(monkeypatch, capsys, tmp_path):
    def broken():
        raise RuntimeError("a CUDA device is visible but does not start (RuntimeError: driver too old)")

    monkeypatch.setattr(gc, "cuda_status", broken)
    assert gc.main(["--json", str(tmp_path / "r.json")]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("gpu-check: FAIL: a CUDA device is visible but does not start")


@pytest.mark.parametrize("argv,message", [(["--steps", "tests,nope"], "--steps tests,nope: expected names from"),
                                          (["--json", "/nonexistent-dir/r.json"], "folder /nonexistent-dir")])
def test_bad_flags_are_one_line_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        gc.main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


# ---- running steps --------------------------------------------------------------------------
def test_a_failing_step_never_stops_the_others_and_the_report_has_every_line(monkeypatch, tmp_path, capsys):
    hang = """
    import subprocess, sys, time, pathlib
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    pathlib.Path(sys.argv[1], "grandchild.pid").write_text(str(child.pid))
    print("started", flush=True)
    time.sleep(60)
    """

    def bad_judge(d):
        return [gc.line("x", gc.PASS, d["missing_key"])]

    steps = [_script_step("first", WRITE_OK),
             _script_step("crash", "import sys; print('boom', file=sys.stderr); raise SystemExit(3)"),
             _script_step("hang", hang, timeout_s=2),
             _script_step("odd", WRITE_OK, judge=bad_judge),
             _script_step("last", WRITE_OK)]
    seen = {}
    real_run_step = gc.run_step

    def spy(step, work, timeout_s=None):
        record, lines = real_run_step(step, work, timeout_s)
        if step.name == "hang":
            seen["grandchild"] = int((work / "hang" / "grandchild.pid").read_text())
        return record, lines

    monkeypatch.setattr(gc, "run_step", spy)
    monkeypatch.setattr(gc, "STEPS", steps)
    monkeypatch.setattr(gc, "cuda_status", lambda: (True, "Fake GPU"))
    out = tmp_path / "gpu-check.json"
    assert gc.main(["--json", str(out)]) == 1  # a line failed

    report = json.loads(out.read_text())
    assert list(report["steps"]) == ["first", "crash", "hang", "odd", "last"]
    verdicts = {ln["check"]: ln["verdict"] for ln in report["lines"]}
    assert verdicts == {"first": "PASS", "crash": "FAIL", "hang": "FAIL", "odd": "FAIL", "last": "PASS"}
    reasons = {ln["check"]: ln["reason"] for ln in report["lines"]}
    assert "exit code 3" in reasons["crash"] and "boom" in reasons["crash"]
    assert "stopped at its limit of 2 s" in reasons["hang"] and "started" in reasons["hang"]
    assert "unexpected result (KeyError" in reasons["odd"]
    assert report["steps"]["hang"]["timed_out"] is True and report["steps"]["crash"]["rc"] == 3
    assert report["steps"]["first"]["result"] == {"ok": True, "value": 7}
    assert _pid_gone(seen["grandchild"]), "the timed-out step's own children must be stopped too"
    assert report["verdict"] == "FAIL" and report["counts"] == {"PASS": 2, "FAIL": 3, "SKIP": 0}
    assert report["gpu"] == "Fake GPU" and "commit" in report and "budgets" in report
    for ln in report["lines"]:
        assert set(ln) == {"check", "verdict", "value", "budget", "reason"}
    for rec in report["steps"].values():
        assert {"command", "timeout_s", "rc", "timed_out", "seconds", "output_tail"} <= set(rec)
    printed = capsys.readouterr().out
    assert "[5/5] last" in printed and "gpu-check: FAIL (2 pass, 3 fail, 0 skip)" in printed


def test_all_passing_exits_0_and_steps_can_be_chosen(monkeypatch, tmp_path):
    monkeypatch.setattr(gc, "STEPS", [_script_step("a", WRITE_OK), _script_step("b", "raise SystemExit(1)")])
    monkeypatch.setattr(gc, "cuda_status", lambda: (True, "Fake GPU"))
    out = tmp_path / "r.json"
    assert gc.main(["--json", str(out), "--steps", "a"]) == 0
    report = json.loads(out.read_text())
    assert list(report["steps"]) == ["a"] and report["verdict"] == "PASS"


def test_the_report_is_on_disk_after_every_step(tmp_path):
    report_path = tmp_path / "r.json"
    copy_report = f"""
    import shutil, sys, json, pathlib
    shutil.copy({str(report_path)!r}, pathlib.Path(sys.argv[1], "result.json"))
    """
    steps = [_script_step("one", WRITE_OK),
             _script_step("two", copy_report, judge=lambda d: [gc.line("two", gc.PASS, len(d["lines"]))])]
    report = gc.run_check(steps, report_path, "Fake GPU", echo=lambda s: None)
    assert report["steps"]["two"]["result"]["lines"][0]["check"] == "one"  # step two saw step one's report
    assert json.loads(report_path.read_text()) == json.loads(json.dumps(report, default=str))


def test_the_whole_check_keeps_to_its_time_budget(tmp_path):
    steps = [_script_step("slow", "import time; time.sleep(60)", timeout_s=60), _script_step("after", WRITE_OK)]
    report = gc.run_check(steps, None, "Fake GPU", budget_s=1.5, echo=lambda s: None)
    assert report["steps"]["slow"]["timed_out"] is True and report["steps"]["slow"]["timeout_s"] <= 1.5
    (after,) = [ln for ln in report["lines"] if ln["check"] == "after"]
    assert after["verdict"] == "FAIL" and "time was used up" in after["reason"]


# ---- tests step ----------------------------------------------------------------------------
def test_tests_step_reads_real_pytest_results_and_a_skip_fails(tmp_path):
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text("def pytest_configure(config):\n"
                                       "    config.addinivalue_line('markers', 'gpu: needs CUDA')\n")
    (suite / "test_fake_gpu.py").write_text(textwrap.dedent("""
        import pytest
        pytestmark = pytest.mark.gpu
        def test_ok(): pass
        def test_bad(): assert 1 == 2, "kernel mismatch"
        @pytest.mark.skip(reason="needs a CUDA GPU")
        def test_skipped(): pass
        @pytest.mark.parametrize("n", [1, 2])
        def test_more(n): pass
    """))
    (suite / "test_plain.py").write_text("def test_not_marked_gpu_is_left_out(): pass\n")
    step = gc.Step("tests", "fake", 60, lambda f: gc.tests_argv(f, ("-m", "gpu", str(suite))), gc.read_junit,
                   gc.judge_tests)
    record, lines = gc.run_step(step, tmp_path / "work")
    d = record["result"]
    assert (d["tests"], d["passed"], d["failed"], d["skipped"], d["errors"]) == (5, 3, 1, 1, 0)
    (ln,) = lines
    assert ln["verdict"] == "FAIL" and ln["value"] == "3 passed, 1 failed, 0 errors, 1 skipped"
    assert "failed" in ln["reason"] and "test_bad" in ln["reason"] and "kernel mismatch" in ln["reason"]
    assert "skipped" in ln["reason"] and "needs a CUDA GPU" in ln["reason"]


def test_tests_verdicts():
    ok = {"tests": 28, "passed": 28, "failed": 0, "errors": 0, "skipped": 0, "problems": []}
    assert gc.judge_tests(ok)[0]["verdict"] == "PASS"
    assert gc.judge_tests({**ok, "tests": 0, "passed": 0})[0]["reason"] == "no test was collected with the gpu marker"
    one_skip = {**ok, "passed": 27, "skipped": 1,
                "problems": [{"test": "t::x", "outcome": "skipped", "message": "needs a CUDA GPU"}]}
    assert gc.judge_tests(one_skip)[0]["verdict"] == "FAIL"


def test_gpu_tests_argv_selects_the_gpu_marker():
    argv = gc.tests_argv(Path("/tmp/x"))
    assert argv[:3] == [PY, "-m", "pytest"] and argv[argv.index("-m", 3) + 1] == "gpu" and "tests" in argv


# ---- kernels step ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kernels_result():
    """The kernel benchmark's real output, timed on the CPU at a tiny size, under each GPU size's name."""
    bench = __import__(gc.KERNEL_BENCH, fromlist=["run"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bench, "analytic", lambda: {})  # byte counts at 1080p: slow, and not judged here
        result = bench.run(None, "cpu", [(gc.KERNEL_SIZES[0], (16, 32))], 0, 1)
    for name in gc.KERNEL_SIZES[1:]:
        result["timings"][name] = copy.deepcopy(result["timings"][gc.KERNEL_SIZES[0]])
    return result


def _with_fused(result: dict, speedup: float, frame_ms: float) -> dict:
    """``result`` as a GPU run would have it: Triton/CuPy timings beside each reference, with speedups."""
    r = copy.deepcopy(result)
    r["providers"], r["dispatch"] = ["reference", "triton", "cupy"], "cuda: triton norm + cupy compositing (Fake)"
    for t in r["timings"].values():
        for op, v in t.items():
            if isinstance(v, dict) and "reference" in v:
                v["triton" if op.startswith("norm") else "cupy"] = dict(v["reference"])
                v["speedup"] = speedup
        t["kernels_frame_ms"] = frame_ms
    return r


def test_kernel_verdicts_on_the_benchmarks_real_output(kernels_result):
    lines = {ln["check"]: ln for ln in gc.judge_kernels(kernels_result)}  # CPU: references only
    assert lines["kernel_providers"]["verdict"] == "FAIL"
    assert lines["kernel_providers"]["reason"] == kernels_result["dispatch"]
    for size in gc.KERNEL_SIZES:
        assert lines[f"kernels_{size}_speedup"]["verdict"] == "FAIL"
        assert lines[f"kernels_{size}_speedup"]["reason"] == "no fused provider was timed"
    assert lines["kernels_1080p_frame_ms"]["verdict"] == "FAIL"

    good = {ln["check"]: ln for ln in gc.judge_kernels(_with_fused(kernels_result, 2.5, 1.2))}
    assert {ln["verdict"] for ln in good.values()} == {"PASS"}
    assert "composite 2.50x" in good["kernels_1080p_speedup"]["value"]
    assert good["kernels_1080p_frame_ms"]["value"] == "1.200 ms" and "3 ms" in good["kernels_1080p_frame_ms"]["budget"]

    slow = _with_fused(kernels_result, 2.5, 3.5)
    slow["timings"]["4k"]["masked_blur"]["speedup"] = 0.8
    bad = {ln["check"]: ln for ln in gc.judge_kernels(slow)}
    assert bad["kernels_4k_speedup"]["verdict"] == "FAIL" and "masked_blur" in bad["kernels_4k_speedup"]["reason"]
    assert bad["kernels_720p_speedup"]["verdict"] == "PASS"
    assert bad["kernels_1080p_frame_ms"]["verdict"] == "FAIL"


def test_kernel_verdict_without_timings():
    lines = gc.judge_kernels({"dispatch": "reference ops: no CUDA device visible", "timings": None,
                              "timings_skipped": "no CUDA device"})
    assert [ln["verdict"] for ln in lines] == ["FAIL", "FAIL"] and lines[1]["reason"] == "no CUDA device"


def test_kernels_argv_is_accepted_by_the_benchmark(monkeypatch, capsys):
    import torch

    bench = __import__(gc.KERNEL_BENCH, fromlist=["main"])
    argv = gc.kernels_argv(Path("/tmp"))
    assert argv[:3] == [PY, "-m", gc.KERNEL_BENCH]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):  # every flag parses; only the missing CUDA device stops it
        bench.main(argv[3:])
    assert "--device cuda: no CUDA device available" in capsys.readouterr().err


# ---- pipeline step --------------------------------------------------------------------------
PIPELINE = {"benchmark": "stylecam pipeline", "size": [1920, 1080], "segmentation": True, "backend": "cuda",
            "backend_reason": "cuda on Fake GPU", "fps_median": 58.2, "latency_ms_p95": 31.0,
            "paced_source_fps": 30.0,
            "stages_ms": {"prepare": 0.9, "segment": 6.1, "stylize": 4.0, "composite": 2.2, "total": 8.1},
            "gpu_stages_ms": {"prepare": 0.31, "stylize": 1.6, "composite": 0.4, "total": 2.31}}


def test_pipeline_verdicts():
    lines = {ln["check"]: ln for ln in gc.judge_pipeline(PIPELINE)}
    assert {ln["verdict"] for ln in lines.values()} == {"PASS"}
    assert lines["pipeline_gpu_ms_per_frame"]["value"] == "2.31 ms (prepare 0.31, stylize 1.60, composite 0.40)"

    slow = dict(PIPELINE, gpu_stages_ms={"prepare": 0.3, "stylize": 3.2, "composite": 0.4, "total": 3.9},
                fps_median=24.0, latency_ms_p95=70.0)
    bad = {ln["check"]: ln["verdict"] for ln in gc.judge_pipeline(slow)}
    assert bad["pipeline_gpu_ms_per_frame"] == bad["pipeline_fps_1080p"] == bad["pipeline_latency_p95_1080p"] == "FAIL"

    cpu = dict(PIPELINE, backend="cpu", segmentation=False, gpu_stages_ms=None)
    cpu["stages_ms"] = dict(PIPELINE["stages_ms"], segment=0.0)
    off = {ln["check"]: ln for ln in gc.judge_pipeline(cpu)}
    assert off["pipeline_backend"]["verdict"] == off["pipeline_segmentation"]["verdict"] == "FAIL"
    assert "did not run on CUDA" in off["pipeline_gpu_ms_per_frame"]["reason"]


def test_pipeline_argv_is_the_cli_bench_on_cuda_at_1080p_with_segmentation():
    from ui.cli import build_parser

    argv = gc.pipeline_argv(Path("/tmp/p"))
    assert argv[:3] == [PY, "-m", "ui.cli"]
    args = build_parser().parse_args(argv[3:])
    assert (args.command, args.backend, args.size, args.preset) == ("bench", "cuda", "1920x1080", "blur")
    assert not args.no_segmentation and Path(args.source).is_file() and args.json == "/tmp/p/pipeline.json"


# ---- fp16 step ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fp16_result(tmp_path_factory):
    import torch

    from realtime import student
    from tests.realtime.test_lut import make_lut_pack

    packs = tmp_path_factory.mktemp("fp16")
    make_pack(packs / "pk", styles=("a", "b"))
    make_lut_pack(packs / "lut")
    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    result = gc.fp16_fidelity("cpu", size=(64, 48), styles_dirs=[str(packs)], include_shipped=False)
    # the process is left as it was: TF32 settings and the student's norm op
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == flags
    assert student._norm_impl is student.norm_rows
    return result


def test_fp16_step_runs_on_cpu_tensors(fp16_result):
    d = fp16_result
    assert d["size"] == [64, 48] and d["pictures"] == list(gc.HELD_OUT_PHOTOS) and d["norm"] == "reference"
    (p,) = d["packs"]
    assert d["not_compared"] == [{"pack": "lut", "why": "a LUT student: its device path (realtime.lut_live) is "
                                                        "not compared here"}]
    assert p["pack"] == "pk" and p["styles"] == 2 and p["nonfinite"] == 0 and len(p["results"]) == 4
    for r in p["results"]:
        assert 30 < r["psnr_db"] < 99 and 0 < r["max_levels"] < 255  # fp16 differs from fp32, a little
    assert p["worst_psnr_db"] == min(r["psnr_db"] for r in p["results"])
    assert p["worst_max_levels"] == max(r["max_levels"] for r in p["results"])


def test_fp16_verdicts(fp16_result):
    d = copy.deepcopy(fp16_result)
    p = d["packs"][0]
    p["worst_psnr_db"], p["worst_max_levels"] = 55.0, 1.5
    (ln,) = gc.judge_fp16(d)
    assert ln["verdict"] == "PASS" and ln["check"] == "fp16_vs_fp32_pk" and "55.0 dB" in ln["value"]
    p["worst_psnr_db"] = 35.0
    assert gc.judge_fp16(d)[0]["verdict"] == "FAIL"
    p["worst_psnr_db"], p["worst_max_levels"] = 55.0, 12.0
    assert gc.judge_fp16(d)[0]["verdict"] == "FAIL"
    p["nonfinite"] = 1
    assert "not finite" in gc.judge_fp16(d)[0]["value"]
    assert gc.judge_fp16({**d, "packs": []})[0]["reason"] == "no style pack with a student was found"


def test_held_out_photos_are_the_ones_training_holds_out():
    from training.data import SKIMAGE_HELD_OUT

    assert gc.HELD_OUT_PHOTOS == SKIMAGE_HELD_OUT
    pics = gc.held_out_pictures((96, 40))
    assert [p.shape for p in pics.values()] == [(40, 96, 3)] * 2


# ---- recording step -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def recording_result(tmp_path_factory):
    return gc.recording_check(tmp_path_factory.mktemp("rec"), size=(160, 120), n=12)


def test_recording_step_records_and_decodes_on_the_cpu(recording_result):
    d = recording_result
    x = d["libx264"]
    assert (x["codec"], x["nvenc_used"], x["frames"], x["frames_written"], x["decoded_frames"]) == \
        ("libx264", False, 12, 12, 12)
    assert x["psnr_db"] > 25 and x["encode_fps"] > 0 and x["bytes"] > 0
    nv = d["h264_nvenc"]
    assert set(nv) in ({"unavailable"}, {"error"}) or nv["nvenc_used"]


def test_recording_verdicts(recording_result):
    d = copy.deepcopy(recording_result)
    d["h264_nvenc"] = {"unavailable": "h264_nvenc does not open on this GPU/driver (no NVENC)"}
    d["libx264"].update(encode_fps=95.0, psnr_db=41.0)
    lines = {ln["check"]: ln for ln in gc.judge_recording(d)}
    assert lines["recording_h264_nvenc"]["verdict"] == "SKIP" and "no NVENC" in lines["recording_h264_nvenc"]["reason"]
    assert lines["recording_libx264"]["verdict"] == "PASS"

    d["h264_nvenc"] = dict(d["libx264"], codec="h264_nvenc", nvenc_used=True, encode_fps=380.0)
    nv = {ln["check"]: ln for ln in gc.judge_recording(d)}["recording_h264_nvenc"]
    assert nv["verdict"] == "PASS" and "4.00x libx264" in nv["value"]

    d["h264_nvenc"].update(decoded_frames=10)
    nv = {ln["check"]: ln for ln in gc.judge_recording(d)}["recording_h264_nvenc"]
    assert nv["verdict"] == "FAIL" and "10 of 12 frames decode" in nv["reason"]
    d["h264_nvenc"] = {"error": "DeviceError: cannot open the h264_nvenc encoder"}
    assert {ln["check"]: ln for ln in gc.judge_recording(d)}["recording_h264_nvenc"]["verdict"] == "FAIL"


def test_child_step_writes_its_json(monkeypatch, tmp_path):
    monkeypatch.setitem(gc.CHILD_STEPS, "fp16", lambda folder: {"packs": [], "folder": str(folder)})
    out = tmp_path / "fp16.json"
    assert gc.main(["--step", "fp16", "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == {"packs": [], "folder": str(tmp_path)}
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
