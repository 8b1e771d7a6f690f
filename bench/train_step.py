"""Lightning training step vs a bare PyTorch loop: same SRResNet-16, batch 16, LR patch 24, Adam, CPU.

Both run in this one process, alternated round by round on identical pre-made batches, so machine
noise hits both alike. Reports images/s of each and the ratio Lightning / bare (goal >= 0.97).

    python bench/train_step.py [--rounds 5] [--steps 12] [--warmup 3] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from lightning_sr.lit_modules import SRModule
from lightning_sr.networks import build_generator

SPEC = {"arch": "srresnet", "res_blocks": 16, "channels": 64, "scale": 4, "norm": "none", "act": "prelu",
        "skip": "bicubic", "res_scale": 1.0}


def make_batches(n: int, batch: int = 16, lr_patch: int = 24):
    g = torch.Generator().manual_seed(0)
    return [{"lr": torch.rand(batch, 3, lr_patch, lr_patch, generator=g),
             "hr": torch.rand(batch, 3, lr_patch * 4, lr_patch * 4, generator=g)} for _ in range(n)]


def bare_loop(batches, warmup: int) -> float:
    torch.manual_seed(0)
    model = build_generator(SPEC).train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=len(batches), eta_min=1e-7)
    t0 = None
    for i, b in enumerate(batches):
        if i == warmup:
            t0 = time.perf_counter()
        loss = F.l1_loss(model(b["lr"]), b["hr"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return time.perf_counter() - t0


class _Timer(L.Callback):
    def __init__(self, warmup: int):
        self.warmup, self.t0, self.t1 = warmup, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.t0 = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        self.t1 = time.perf_counter()


def lightning_loop(batches, warmup: int) -> float:
    torch.manual_seed(0)
    module = SRModule(SPEC, 4, loss="l1", optim={"lr": 2e-4, "betas": [0.9, 0.99]},
                      scheduler={"name": "cosine", "eta_min": 1e-7})
    timer = _Timer(warmup)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=len(batches), logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_val_batches=0, callbacks=[timer])
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    return timer.t1 - timer.t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    batches = make_batches(a.warmup + a.steps)
    imgs = a.steps * 16
    bare, light = [], []
    for r in range(a.rounds):
        bare.append(imgs / bare_loop(batches, a.warmup))
        light.append(imgs / lightning_loop(batches, a.warmup))
        print(f"round {r + 1}: bare {bare[-1]:.2f} img/s, lightning {light[-1]:.2f} img/s, "
              f"ratio {light[-1] / bare[-1]:.3f}", flush=True)
    ratios = [x / y for x, y in zip(light, bare, strict=True)]
    print(f"\nthreads={torch.get_num_threads()} steps/round={a.steps} rounds={a.rounds}")
    print(f"bare PyTorch : median {statistics.median(bare):.2f} img/s")
    print(f"Lightning    : median {statistics.median(light):.2f} img/s")
    print(f"ratio Lightning/bare: median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f});"
          f" goal >= 0.97")


if __name__ == "__main__":
    main()
