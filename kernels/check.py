"""``make kernels-check``: verify every kernel without a GPU and print one summary.

Runs the kernel tests in two pytest processes (the Triton tests need ``TRITON_INTERPRET=1``
before triton is imported; everything else runs in a normal process), groups the results
by what they verify, adds the analytic bytes-moved ratios and exits non-zero if anything failed.

    python -m kernels.check
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests" / "kernels"

GROUPS = {
    "test_triton_norm": "Triton norm vs reference (TRITON_INTERPRET=1, CPU)",
    "test_triton_compile": "Triton norm compiles to CUBIN for sm_80/89/90 (ahead of time)",
    "test_composite": "composite.cu vs reference (g++ emulation, block by block)",
    "test_lut": "LUT change (lut_delta) vs reference vs SciPy (g++ emulation)",
    "test_cuda_source": "composite.cu NVRTC builds (sm_80, sm_89, sm_90) + g++ -Werror",
    "test_reference_norm": "norm reference (= student op; rows, blends, bad input)",
    "test_dispatch": "dispatch (status line, CPU fallback)",
    "test_benchmarks": "benchmarks (counted bytes, JSON, CLI)",
    "test_provenance": "benchmark provenance (machine, versions, commit)",
    "test_gpu": "GPU kernels vs reference (needs CUDA)",
}


def _pytest(files: list[Path], env: dict[str, str]) -> tuple[int, dict[str, Counter], dict[str, str], str]:
    """Run pytest on ``files``; per-module outcome counts, first skip reason per module, output."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
               f"--junitxml={xml}", *map(str, files)]
        res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        counts: dict[str, Counter] = {}
        reasons: dict[str, str] = {}
        if xml.exists():
            for case in ET.parse(xml).getroot().iter("testcase"):
                mod = case.get("classname", "").split(".")[-1]
                outcome = "passed"
                for child in case:
                    if child.tag in ("failure", "error"):
                        outcome = "failed"
                    elif child.tag == "skipped":
                        outcome = "skipped"
                        reasons.setdefault(mod, (child.get("message") or "").replace("Skipped: ", ""))
                counts.setdefault(mod, Counter())[outcome] += 1
    return res.returncode, counts, reasons, res.stdout + res.stderr


def main() -> int:
    base_env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    rc1, c1, r1, out1 = _pytest([TESTS / "test_triton_norm.py"], dict(base_env, TRITON_INTERPRET="1"))
    others = sorted(p for p in TESTS.glob("test_*.py")
                    if p.name not in ("test_triton_norm.py", "test_interpreter_subprocess.py"))
    rc2, c2, r2, out2 = _pytest(others, base_env)
    counts, reasons = {**c1, **c2}, {**r1, **r2}

    print("kernels-check")
    print("-" * 100)
    failed = False
    for mod, title in GROUPS.items():
        c = counts.get(mod, Counter())
        state = "FAIL" if c["failed"] else ("ok" if c["passed"] else ("skip" if c["skipped"] else "MISSING"))
        failed |= state in ("FAIL", "MISSING") and mod != "test_gpu"
        detail = f"{c['passed']} passed" + (f", {c['failed']} failed" if c["failed"] else "") \
            + (f", {c['skipped']} skipped: {reasons.get(mod, '').split(' (')[0]}" if c["skipped"] else "")
        print(f"  [{state:>4}] {title:66s} {detail}")
    for mod in sorted(set(counts) - set(GROUPS)):
        c = counts[mod]
        failed |= bool(c["failed"])
        print(f"  [{'FAIL' if c['failed'] else 'ok':>4}] {mod:66s} {c['passed']} passed, {c['failed']} failed")

    from kernels import benchmarks, composite_ops

    try:
        (major, minor), lib = composite_ops.nvrtc_version()
        print(f"  NVRTC {major}.{minor} from {lib}")
    except Exception as err:  # reported, and already failed in test_cuda_source
        print(f"  NVRTC unavailable: {err}")
    a = benchmarks.analytic()
    print(f"  analytic bytes per {a['frame']} frame:")
    for key in ("norm", "composite"):
        v = a[key]
        ok = v["ratio"] >= v["target_ratio"]
        failed |= not ok
        print(f"  [{'ok' if ok else 'FAIL':>4}] {key:10s} unfused {v['unfused_bytes'] / 1e6:8.1f} MB, fused "
              f"{v['fused_bytes'] / 1e6:6.1f} MB: {v['ratio']:.2f}x (target >= {v['target_ratio']}x)")
    print("-" * 100)
    if rc1 or rc2:
        failed = True
        print((out1 if rc1 else "")[-4000:] + (out2 if rc2 else "")[-4000:])
    print("kernels-check: FAILED" if failed else "kernels-check: all CPU-verifiable checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
