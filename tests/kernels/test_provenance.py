"""kernels.provenance: one shape of machine, versions and commit for every benchmark."""

import json
import subprocess
import sys
from pathlib import Path

from kernels import provenance

ROOT = Path(__file__).resolve().parents[2]


def test_provenance_has_the_shared_keys_and_extras():
    p = provenance.provenance({"device": "cpu"}, qt="6.0")
    json.dumps(p)
    assert set(p) == {"machine", "versions", "commit", "created_utc"}
    assert p["machine"]["device"] == "cpu" and p["machine"]["cores"] >= 1 and p["machine"]["cpu"]
    v = p["versions"]
    assert v["qt"] == "6.0" and v["python"].count(".") == 2
    assert v["torch"] and v["numpy"] and v["stylecam"]  # installed in every environment that runs the tests
    assert p["commit"] is None or p["commit"].split("-")[0].isalnum()


def test_versions_import_nothing():
    # Benchmarks of light parts (sources, recorder) must not pay for importing torch or MediaPipe.
    code = ("import sys; from kernels.provenance import provenance; p = provenance(); "
            "print(p['versions']['mediapipe'] is not None, 'mediapipe' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False", "False"]
