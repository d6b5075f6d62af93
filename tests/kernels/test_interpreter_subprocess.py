"""Run the Triton interpreter tests in a child pytest with ``TRITON_INTERPRET=1`` (see conftest)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.interpreter

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def test_triton_norm_under_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
           "-rfEs", str(HERE / "test_triton_norm.py")]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    summary = out.strip().splitlines()[-1] if out.strip() else ""
    print(out)
    assert res.returncode == 0, f"interpreter tests failed ({summary}):\n{out[-6000:]}"
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 20, f"too few interpreter tests ran: {summary}"
    assert "skipped" not in summary and "deselected" not in summary, f"interpreter tests must not skip: {summary}"
