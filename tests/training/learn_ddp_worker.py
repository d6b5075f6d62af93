"""One rank of the two-process ``learn`` test (``test_learn_ddp.py``); torchrun starts it.

``python -m torch.distributed.run --nproc_per_node=2 -m tests.training.learn_ddp_worker OUT`` runs, in one
process group: a 4-step run that rank 1 alone stops with SIGTERM after step 2, then ``--resume`` to step 4.
Each rank writes ``OUT/rank<r>.json``: a digest of its LUT model after every step, of the model, weight
average and critic each run ends with, its own sliced-Wasserstein losses and how each run ended.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from training import learn as learn_mod


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict's names and exact values."""
    h = hashlib.sha256()
    for k, v in sorted(state.items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(out: Path) -> None:
    from tests.training.test_learn import _sets

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    rec: dict = {"steps": {}, "sw": [], "ends": [], "finals": []}

    train_step, finish = learn_mod._Trainer.train_step, learn_mod._finish

    def recording_step(self, views):
        losses = train_step(self, views)
        rec["sw"].append(float(losses["sw"].detach()))
        return losses

    def recording_finish(trainer, *args, **kw):
        rec["finals"].append({name: state_digest(m.state_dict()) for name, m in
                              (("model", trainer.net), ("ema", trainer.ema), ("critic", trainer.critic))})
        return finish(trainer, *args, **kw)

    learn_mod._Trainer.train_step, learn_mod._finish = recording_step, recording_finish

    def on_step(step: int, net) -> None:
        rec["steps"][step] = state_digest(net.state_dict())
        if step == 2 and rank == 1 and not cfg.resume:
            os.kill(os.getpid(), signal.SIGTERM)  # on one rank only: the other must stop with it

    style, content = _sets(6)
    cfg = learn_mod.LearnConfig(style_photos=[], out=str(out / "pack"), style_name="Dist", steps=4, batch=4,
                                progress=False, kid=False, log_every=1, seed=5)
    try:
        learn_mod.learn(cfg, style, content, on_step=on_step)
        rec["ends"].append("finished")
    except KeyboardInterrupt:
        rec["ends"].append("interrupted")
    cfg.resume = True
    res = learn_mod.learn(cfg, style, content, on_step=on_step)
    rec["ends"].append(f"finished at {res.steps}")
    (out / f"rank{rank}.json").write_text(json.dumps(rec, indent=1))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
