"""Weight Recycle at inference: what rebuilding the rotated filters at every forward costs, and what materialising
them gives back (issue 14).

SRResNet-16 x4 (64 channels, recycled residual blocks), batch 1, CPU, LR ``--size`` pixels; variants timed in
alternated rounds in one process with the same threads (medians):

* ``plain 64``: ordinary convolutions (the dense reference);
* ``recycled 64``: ``model.conv=recycle`` as trained (full weights rebuilt from the stored quarter every forward);
* ``materialised 64``: the recycled model after ``lightning_sr.networks.recycle.materialize`` (plain convolutions,
  the same output);
* ``plain 42``: the control with about the recycled model's stored parameters.

    python bench/recycle.py [--size 64] [--rounds 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lightning_sr.cost import count_macs, count_params, cpu_name
from lightning_sr.networks import build_generator, materialize

SPEC = {"arch": "srresnet", "res_blocks": 16, "scale": 4, "norm": "none", "act": "prelu", "skip": "bicubic"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rec = build_generator({**SPEC, "channels": 64, "conv": "recycle"}).eval()
    with torch.no_grad():  # non-trivial weights (a fresh SRResNet's tail is zero: every output would be the skip)
        for p in rec.parameters():
            p.normal_(0, 0.02)
    models = {"plain 64": build_generator({**SPEC, "channels": 64}).eval(), "recycled 64": rec,
              "materialised 64": materialize(rec).eval(), "plain 42": build_generator({**SPEC, "channels": 42}).eval()}
    x = torch.rand(1, 3, a.size, a.size)
    with torch.inference_mode():
        diff = (models["recycled 64"](x) - models["materialised 64"](x)).abs().max().item()
        times: dict[str, list[float]] = {k: [] for k in models}
        for m in models.values():
            m(x)
        for _ in range(a.rounds):
            for k, m in models.items():
                t0 = time.perf_counter()
                m(x)
                times[k].append((time.perf_counter() - t0) * 1e3)
    ref = statistics.median(times["plain 64"])
    print(f"CPU: {cpu_name()}, {a.threads} threads, LR {a.size}x{a.size}, {a.rounds} alternated rounds; "
          f"recycled vs materialised max |diff| {diff:.1e}")
    print("| variant | params (stored) | GMACs | median ms | vs plain 64 |\n|---|---|---|---|---|")
    for k, m in models.items():
        med = statistics.median(times[k])
        print(f"| {k} | {count_params(m):,} | {count_macs(m, (3, a.size, a.size)) / 1e9:.2f} | {med:.1f} | "
              f"{med / ref:.2f}x |")


if __name__ == "__main__":
    main()
