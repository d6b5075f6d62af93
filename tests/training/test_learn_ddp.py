"""``learn`` as two processes under torchrun (gloo on the CPU): one pack, one run folder, the same weights
on both ranks, a stop on one rank stopping both, and ``--resume``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from realtime.styles import load_pack
from tests.training.learn_ddp_worker import state_digest

ROOT = Path(__file__).resolve().parents[2]


def test_two_processes_learn_one_pack_with_the_same_weights(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
           "tests.training.learn_ddp_worker", str(tmp_path)]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2)]

    # SIGTERM reached rank 1 alone, after step 2: both ranks stopped there, then both resumed to step 4.
    assert [r["ends"] for r in ranks] == [["interrupted", "finished at 4"]] * 2
    assert list(ranks[0]["steps"]) == ["1", "2", "3", "4"]
    # Different views on each rank, yet the same weights after every step and at the end of both runs.
    assert ranks[0]["sw"] != ranks[1]["sw"]
    assert ranks[0]["steps"] == ranks[1]["steps"]
    assert ranks[0]["finals"] == ranks[1]["finals"] and len(ranks[0]["finals"]) == 2
    assert ranks[0]["finals"][0]["model"] == ranks[0]["steps"]["2"]

    # Rank 0 alone wrote the run: one pack, one metrics.jsonl with each step once, a checkpoint of those weights.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pack", "pack.run", "rank0.json", "rank1.json"]
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("metrics.jsonl")] == [Path("pack.run/metrics.jsonl")]
    recs = [json.loads(x) for x in (tmp_path / "pack.run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in recs if "final" not in x] == [1, 2, 3, 4]
    assert [(x["step"], x["interrupted"]) for x in recs if "final" in x] == [(2, True), (4, False)]
    ck = torch.load(tmp_path / "pack.run" / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 4
    assert {k: state_digest(ck[k]) for k in ("model", "ema", "critic")} == {
        "model": ranks[1]["finals"][1]["model"], "ema": ranks[1]["finals"][1]["ema"],
        "critic": ranks[1]["finals"][1]["critic"]}
    pack = load_pack(tmp_path / "pack")
    assert pack.meta["styles"][0]["metrics"]["steps"] == 4
    assert pack.meta["styles"][0]["learned"]["interrupted"] is False
