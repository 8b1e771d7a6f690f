"""Channel sparsity and distillation at about half the dense model's MACs (issue 11), on the embedded photos.

Rows (every row trains the same number of steps after the dense model; the same data, optimiser, schedule):

* ``sparsity``: the dense model with learnable gates (proximal, ``target_macs=0.5``), pruned halfway, fine-tuned;
* ``channel_prune``: uniform L1-norm channel pruning of the dense model (ratio chosen for ~50 % MACs), fine-tuned;
* ``scratch``: an SRResNet of the same depth and the width that gives ~50 % MACs, trained from random weights;

each without distillation, with output distillation from the dense model, and with output + FAKD (spatial affinity
at two blocks). Reported: PSNR on the embedded validation photos, params, MACs (LR 3x128x128), CPU latency.

    python bench/sparsity_distill.py [--dense-steps 400] [--steps 300] [--out /tmp/lsr_bench_kd]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def compose(overrides: list[str], out_dir: Path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import open_dict

    import lightning_sr  # noqa: F401  (resolvers)

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out_dir)
    return cfg


def run(name: str, overrides: list[str], out: Path) -> dict:
    from lightning_sr.run import train

    t0 = time.perf_counter()
    m = train(compose(overrides, out / name))
    m["wall_s"] = time.perf_counter() - t0
    print(f"{name}: {m['psnr']:.3f} dB, {m['params']:,} params, {m['cost']['macs'] / 1e9:.3f} GMACs, "
          f"{m['cost'].get('latency_ms', 0):.1f} ms ({m['wall_s']:.0f} s)", flush=True)
    return m



def main() -> None:
    from lightning_sr.cost import cpu_name
    ap = argparse.ArgumentParser()
    ap.add_argument("--dense-steps", type=int, default=400)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--out", default="/tmp/lsr_bench_kd")
    args = ap.parse_args()
    out = Path(args.out)
    common = ["callbacks.progress_bar.refresh_rate=0", "callbacks.model_summary=null", "logger=csv",
              "cost.repeats=7", "cost.warmup=2", f"trainer.val_check_interval={args.steps}"]
    arch = [f"model.res_blocks={args.blocks}", f"model.channels={args.channels}"]
    dense = run("dense", common + arch + [f"trainer.max_steps={args.dense_steps}",
                                          f"trainer.val_check_interval={args.dense_steps}"], out)
    ckpt = dense["last_ckpt"]
    steps = [f"trainer.max_steps={args.steps}"]
    half = args.steps // 2
    # the uniform pruning ratio and the scratch width that give ~50 % of the dense MACs
    from lightning_sr.checkpoint import load_generator
    from lightning_sr.cost import count_macs
    from lightning_sr.networks import build_generator
    from lightning_sr.transforms.channels import prune_channels

    g, _ = load_generator(ckpt)
    base = count_macs(g, (3, 32, 32))
    ratio = min((r / 100 for r in range(5, 95)), key=lambda r: abs(
        count_macs(_pruned(load_generator(ckpt)[0], r, prune_channels), (3, 32, 32)) / base - 0.5))
    width = min(range(8, args.channels + 1), key=lambda c: abs(count_macs(build_generator(
        {"arch": "srresnet", "res_blocks": args.blocks, "channels": c, "scale": 4, "norm": "none", "act": "prelu",
         "skip": "bicubic", "res_scale": 1.0}), (3, 32, 32)) / base - 0.5))
    mid, last = args.blocks // 2 - 1, args.blocks - 1
    kd = {"none": [], "output": [f"compression.distill.teacher={ckpt}"],
          "output+fakd": [f"compression.distill.teacher={ckpt}",
                          f"compression.distill.fakd=[{{student: body.{mid}, teacher: body.{mid}}},"
                          f"{{student: body.{last}, teacher: body.{last}}}]"]}
    rows = {"dense": dense}
    for kname, kover in kd.items():

        def with_kd(names: list[str], kover: list[str] = kover) -> list[str]:
            names = names + (["distill"] if kover else [])
            return [f"compression=[{','.join(names)}]" if names else "compression=none", *kover]

        rows[f"sparsity / {kname}"] = run(f"sparsity_{kname}", common + steps + [f"model.init_from={ckpt}"] + with_kd(
            ["channel_sparsity"]) + ["compression.channel_sparsity.target_macs=0.5",
                                     f"compression.channel_sparsity.prune_at_step={half}"], out)
        rows[f"channel_prune L1 / {kname}"] = run(f"prune_{kname}", common + steps + [f"model.init_from={ckpt}"] + with_kd(
            ["channel_prune"]) + [f"compression.channel_prune.ratio={ratio}", "compression.channel_prune.importance=l1",
                                  "compression.channel_prune.protect=[tail]"], out)
        rows[f"scratch ({width} ch) / {kname}"] = run(f"scratch_{kname}", common + steps + [
            f"model.res_blocks={args.blocks}", f"model.channels={width}"] + with_kd([]), out)
    print(f"\n## Sparsity and distillation at ~50 % MACs ({cpu_name()}, {os.cpu_count()} cores)\n")
    print(f"Dense SRResNet-{args.blocks}/{args.channels}: {args.dense_steps} steps; every other row {args.steps} steps "
          f"(uniform pruning ratio {ratio:.2f} with the trunk, scratch width {width}).\n")
    print("| row | PSNR (dB) | params | GMACs (LR 128x128) | MACs vs dense | CPU latency (ms) |\n|---|---|---|---|---|---|")
    for name, m in rows.items():
        print(f"| {name} | {m['psnr']:.3f} | {m['params']:,} | {m['cost']['macs'] / 1e9:.3f} | "
              f"{m['cost']['macs'] / dense['cost']['macs']:.2f} | {m['cost']['latency_ms']:.1f} |")
    (out / "results.json").write_text(json.dumps({k: {x: v[x] for x in ("psnr", "params", "cost")}
                                                  for k, v in rows.items()}, indent=2))


def _pruned(g, ratio, prune_channels):
    prune_channels(g, ratio, "l1", protect=["tail"])
    return g


if __name__ == "__main__":
    main()
