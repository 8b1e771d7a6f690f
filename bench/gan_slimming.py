"""GAN Slimming's single run vs the sequential pipeline vs the dense teacher, at a matched MAC budget (issue 13),
on the embedded photos, CPU.

Rows:

* ``teacher``: the dense generator the students start from and distil from (its metrics as measured by the runs);
* ``gan_slimming``: ``experiment=gan_slimming``: SRGAN student initialised from the teacher, GAN + pixel loss +
  output and feature distillation + proximal channel sparsity (the paper's SGD gate optimiser, ``target_macs``) for
  75 % of the steps, quantization-aware from step 0 (eager fake quantization of the gated network), physical
  removal, then the captured QAT graph for the last 25 %, int8 at the end: one command;
* ``gan_slimming_late``: the same with QAT joining at the removal (``compression.qat.start_step`` = prune step:
  fp32 for the first 75 %);
* ``sequential``: ``compression=[channel_prune,distill]`` (uniform L2 channel pruning of the teacher, its ratio
  chosen to give the MACs the single run reached) fine-tuned with the same losses for 75 % of the steps, then
  ``compression=[distill,qat]`` on that checkpoint for the last 25 %: two commands, the same number of steps.

Both students end as int8 programs (int8.pt2). Reported: PSNR/SSIM (and LPIPS with ``--lpips FILE``, the AlexNet
backbone) on the embedded validation photos of the fp32 student and of its int8 model, MACs (LR 3x128x128), bytes
(fp32 teacher vs int8 artefact: r_c), compiled CPU latency of the int8 model vs compiled fp32. The perceptual (VGG)
loss is off (``model.perceptual.weight=0``): no pretrained VGG19 here.

    python bench/gan_slimming.py --teacher T.ckpt [--steps 300] [--target-macs 0.5] [--out /tmp/lsr_bench_gs]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.sparsity_distill import compose  # noqa: E402
from lightning_sr.cost import cpu_name  # noqa: E402


def run(name: str, overrides: list[str], out: Path) -> dict:
    from lightning_sr.run import train

    t0 = time.perf_counter()
    m = train(compose(overrides, out / name))
    m["wall_s"] = time.perf_counter() - t0
    q = m.get("int8") or {}
    print(f"{name}: fp32 {m['psnr']:.3f} dB, int8 {q.get('psnr', float('nan')):.3f} dB, {m['params']:,} params, "
          f"{m['cost']['macs'] / 1e9:.3f} GMACs ({m['wall_s']:.0f} s)", flush=True)
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher", required=True, help="the dense generator checkpoint (e.g. SRResNet-16 trained by "
                                                     "python train.py)")
    ap.add_argument("--steps", type=int, default=300, help="optimiser steps of each student (SRGAN: 2 per batch)")
    ap.add_argument("--target-macs", type=float, default=0.5)
    ap.add_argument("--rho", type=float, default=None, help="channel_sparsity.rho of the single run (default: the "
                                                            "experiment's 0.01, sized for 200k steps)")
    ap.add_argument("--gate-lr", type=float, default=None, help="channel_sparsity.gate_lr of the single runs (default: "
                                                                "the paper's 0.1)")
    ap.add_argument("--only-single", action="store_true", help="run the single GAN Slimming runs only")
    ap.add_argument("--lpips", default=None, help="AlexNet backbone file for LPIPS (e.g. ../shared/weights/...)")
    ap.add_argument("--out", default="/tmp/lsr_bench_gs")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    warm = 2 * round(0.75 * a.steps / 2)
    batches = a.steps // 2
    common = ["data=embedded", "trainer=default", "logger=csv", "model.perceptual.weight=0",
              "callbacks.progress_bar.refresh_rate=0", f"compression.distill.teacher={a.teacher}",
              f"trainer.val_check_interval={max(1, batches // 2)}"]
    if a.lpips:
        common += ["metrics.lpips.enabled=true", f"metrics.lpips.backbone_path={a.lpips}"]
    rows = {}
    rho = [f"compression.channel_sparsity.rho={a.rho}"] if a.rho is not None else []
    rho += [f"compression.channel_sparsity.gate_lr={a.gate_lr}"] if a.gate_lr is not None else []
    gs = ["experiment=gan_slimming", *common, f"trainer.max_steps={a.steps}",
          f"compression.channel_sparsity.target_macs={a.target_macs}", *rho]
    rows["gan_slimming"] = run("gan_slimming", gs, out)
    rows["gan_slimming_late"] = run("gan_slimming_late", [*gs, "compression.qat.start_step="
                                                               "${compression.channel_sparsity.prune_at_step}"], out)
    if a.only_single:
        (out / "results.json").write_text(json.dumps(rows, indent=1, default=float))
        return
    t = rows["gan_slimming"]["teacher"]
    ratio = 1 - math.sqrt(rows["gan_slimming"]["cost"]["macs"] / t["macs"])  # MACs ~ width^2
    seq_common = [c for c in common if not c.startswith("compression.distill.teacher")]
    rows["sequential_1_prune_finetune"] = run(
        "sequential_1", ["model=srgan", *seq_common, f"model.init_from={a.teacher}",
                         "compression=[channel_prune,distill]", f"compression.channel_prune.ratio={ratio:.3f}",
                         "compression.channel_prune.protect=[tail]",  # the trunk width too, like channel sparsity
                         f"compression.distill.teacher={a.teacher}",
                         "compression.distill.features=[{student: body_tail.0, teacher: body_tail.0}]",
                         f"trainer.max_steps={warm}"], out)
    rows["sequential"] = run(
        "sequential_2", ["model=srgan", *seq_common, f"model.init_from={out / 'sequential_1/checkpoints/last.ckpt'}",
                         "compression=[distill,qat]", f"compression.distill.teacher={a.teacher}",
                         f"trainer.max_steps={a.steps - warm}"], out)
    (out / "results.json").write_text(json.dumps(rows, indent=1, default=float))
    keys = [k for k in ("psnr", "ssim", "lpips") if k in rows["gan_slimming"]]
    print(f"\nCPU: {cpu_name()}; students: {a.steps} SRGAN steps each; teacher {a.teacher}")
    head = ["row", "params", "GMACs", "r_s", "bytes (MB)", "r_c"] + [f"fp32 {k}" for k in keys] + \
           [f"int8 {k}" for k in keys] + ["int8 / fp32 compiled latency", "int8 vs fake-quant graph (8-bit levels, max / mean)"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    print("| teacher (dense, fp32) | " + f"{t['params']:,} | {t['macs'] / 1e9:.2f} | 1 | {t['size_mb']:.3f} | 1 | "
          + " | ".join(f"{t[k]:.4g}" for k in keys) + " | " + " | ".join("" for _ in keys) + " | | |")
    for name in ("gan_slimming", "gan_slimming_late", "sequential"):
        m = rows[name]
        q = m["int8"]
        macs = m["cost"]["macs"]
        print(f"| {name} | {m['params']:,} | {macs / 1e9:.2f} | {t['macs'] / macs:.2f} | {q['size_mb']:.3f} | "
              f"{t['size_mb'] / q['size_mb']:.2f} | " + " | ".join(f"{m[k]:.4g}" for k in keys) + " | "
              + " | ".join(f"{q[k]:.4g}" for k in keys) + f" | {q.get('latency_ratio', float('nan')):.2f} "
              f"({q.get('latency_ms', float('nan')):.0f} / {q.get('fp32_latency_ms', float('nan')):.0f} ms) | "
              f"{q.get('int8_vs_fake_quant', {}).get('max_8bit', float('nan')):.0f} / "
              f"{q.get('int8_vs_fake_quant', {}).get('mean_8bit', float('nan')):.3f} |")


if __name__ == "__main__":
    main()
