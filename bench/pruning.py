"""Channel pruning benchmark: does removing channels make the network faster, as much as it removes MACs?

SRResNet-16 (64 channels, x4) on a 3x64x64 LR input, CPU, batch 1:

* ``dense``: the model as built;
* ``ModelPruning``: Lightning's ModelPruning callback (``ln_structured``, L2 along output channels) at the same
  ratio on the same convolutions, masks made permanent: the weights hold zeros, the tensors keep their shape;
* ``channel_prune``: lightning-sr's physical pruning (default protection: head and tail keep their output
  channels, so the trunk keeps 64 channels; blocks' inner channels and the upsampler are pruned);
* ``channel_prune protect=[tail]``: the trunk width is pruned too.

Every figure comes from ``lightning_sr.cost`` (MACs: ``count_macs``; latency: ``cpu_latency_ms``, median of
``repeats`` runs); the models are timed in alternation, ``rounds`` times, and the median over rounds is kept.
``efficiency`` = latency speedup / MAC reduction (1.0: the time falls exactly like the MACs).

    python bench/pruning.py                      # about a minute on 2 CPU cores
    python bench/pruning.py --threads 2 --rounds 9
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_sr.cost import count_macs, count_params, cpu_latency_ms  # noqa: E402
from lightning_sr.networks import build_generator  # noqa: E402
from lightning_sr.transforms.channels import output_convs, prune_channels  # noqa: E402


def model_pruning_masks(model: nn.Module, ratio: float) -> nn.Module:
    """Lightning's ModelPruning (structured L2 masks on conv output channels), made permanent."""
    from lightning.pytorch.callbacks import ModelPruning

    skip = {id(m) for m in [model.head[0], *output_convs(model)]}
    params = [(m, "weight") for m in model.modules() if isinstance(m, nn.Conv2d) and id(m) not in skip]
    cb = ModelPruning("ln_structured", parameters_to_prune=params, use_global_unstructured=False, amount=ratio,
                      pruning_dim=0, pruning_norm=2, make_pruning_permanent=True)
    cb._parameters_to_prune = ModelPruning.sanitize_parameters_to_prune(model, params, ["weight"])
    cb.apply_pruning(ratio)
    cb.make_pruning_permanent(model)
    zeros = sum(int((m.weight.flatten(1).abs().sum(1) == 0).sum()) for m, _ in params)
    assert zeros > 0, "ModelPruning masked nothing"
    return model


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--res-blocks", type=int, default=16)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--input", type=int, nargs=3, default=[3, 64, 64], metavar=("C", "H", "W"))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.manual_seed(0)
    size = tuple(a.input)
    dense = build_generator({"arch": "srresnet", "res_blocks": a.res_blocks, "channels": a.channels, "scale": 4,
                             "norm": "none", "act": "prelu", "skip": "bicubic"}).eval()
    with torch.no_grad():  # non-trivial weights (a fresh SRResNet has a zero tail)
        for p in dense.parameters():
            p.normal_(0, 0.02)
    models = {"dense": dense, "ModelPruning (masks)": model_pruning_masks(copy.deepcopy(dense), a.ratio)}
    ours = copy.deepcopy(dense)
    prune_channels(ours, a.ratio, "l2")
    models["channel_prune"] = ours
    trunk = copy.deepcopy(dense)
    prune_channels(trunk, a.ratio, "l2", protect=["tail"])
    models["channel_prune protect=[tail]"] = trunk

    t0 = time.perf_counter()
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(a.rounds):  # alternate the models: drifts of a shared machine hit them all alike
        for name, m in models.items():
            ms, threads = cpu_latency_ms(m, size, warmup=1, repeats=a.repeats, threads=a.threads)
            times[name].append(ms)
    rows = {}
    for name, m in models.items():
        rows[name] = {"params": count_params(m), "macs": count_macs(m, size), "ms": statistics.median(times[name]),
                      "spread": (max(times[name]) - min(times[name])) / statistics.median(times[name])}
    base = rows["dense"]
    print(f"SRResNet-{a.res_blocks} ({a.channels} ch, x4), ratio {a.ratio}, LR input {'x'.join(map(str, size))}, "
          f"CPU {threads} thread(s), median of {a.rounds} alternating rounds x {a.repeats} runs "
          f"({time.perf_counter() - t0:.0f} s)")
    head = f"{'model':<30} {'params':>9} {'GMACs':>7} {'MAC red.':>8} {'ms':>8} {'spread':>7} {'speedup':>8} " \
           f"{'efficiency':>10}"
    print(head)
    print("-" * len(head))
    for name, r in rows.items():
        r["mac_reduction"] = base["macs"] / r["macs"]
        r["speedup"] = base["ms"] / r["ms"]
        r["efficiency"] = r["speedup"] / r["mac_reduction"]
        print(f"{name:<30} {r['params']:>9} {r['macs'] / 1e9:>7.2f} {r['mac_reduction']:>7.2f}x {r['ms']:>8.1f} "
              f"{r['spread']:>6.0%} {r['speedup']:>7.2f}x {r['efficiency']:>10.2f}")
    return rows


if __name__ == "__main__":
    main()
