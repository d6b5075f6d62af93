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
from tests.training.test_learn import _sets
from training import learn as learn_mod

ROOT = Path(__file__).resolve().parents[2]


def test_two_processes_learn_one_pack_with_the_same_weights(tmp_path, monkeypatch):
    ddp, single_dir = tmp_path / "ddp", tmp_path / "single"
    ddp.mkdir()
    single_dir.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
           "tests.training.learn_ddp_worker", str(ddp)]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = [json.loads((ddp / f"rank{i}.json").read_text()) for i in range(2)]

    # SIGTERM reached rank 1 alone, after step 2: both ranks stopped there, then both resumed to step 4.
    assert [r["ends"] for r in ranks] == [["interrupted", "finished at 4"]] * 2
    assert list(ranks[0]["steps"]) == ["1", "2", "3", "4"]
    # Different views on each rank, yet the same weights after every step and at the end of both runs.
    assert ranks[0]["sw"] != ranks[1]["sw"]
    assert ranks[0]["steps"] == ranks[1]["steps"]
    assert ranks[0]["finals"] == ranks[1]["finals"] and len(ranks[0]["finals"]) == 2
    assert ranks[0]["finals"][0]["model"] == ranks[0]["steps"]["2"]
    # Rank 0 draws the views a single process would: its first step's losses are a plain run's.
    single, train_step = [], learn_mod._Trainer.train_step

    def recording_step(self, views):
        single.append(train_step(self, views))
        return single[-1]

    monkeypatch.setattr(learn_mod._Trainer, "train_step", recording_step)
    learn_mod.learn(learn_mod.LearnConfig(style_photos=[], out=str(single_dir / "pack"), style_name="Dist",
                                          steps=1, batch=4, progress=False, kid=False, seed=5), *_sets(6))
    assert float(single[0]["sw"].detach()) == ranks[0]["sw"][0]

    # Rank 0 alone wrote the run: one pack, one metrics.jsonl with each step once, a checkpoint of those weights.
    assert sorted(p.name for p in ddp.iterdir()) == ["pack", "pack.run", "rank0.json", "rank1.json"]
    assert [p.relative_to(ddp) for p in ddp.rglob("metrics.jsonl")] == [Path("pack.run/metrics.jsonl")]
    recs = [json.loads(x) for x in (ddp / "pack.run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in recs if "final" not in x] == [1, 2, 3, 4]
    assert [(x["step"], x["interrupted"]) for x in recs if "final" in x] == [(2, True), (4, False)]
    ck = torch.load(ddp / "pack.run" / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 4
    assert {k: state_digest(ck[k]) for k in ("model", "ema", "critic")} == ranks[1]["finals"][1]
    pack = load_pack(ddp / "pack")
    assert pack.meta["styles"][0]["metrics"]["steps"] == 4
    assert pack.meta["styles"][0]["learned"]["interrupted"] is False
