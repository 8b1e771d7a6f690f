"""Video SR benchmarks (issue 10), CPU here, GPU when one is lent (--device cuda):

1. Streaming inference speed of the frame-recurrent generator at 180x144 LR (Vid4's size, 720x576 output) for
   10 and 1 SRNet blocks (frames per second, median of alternated rounds).
2. Peak memory of streaming inference is flat in the clip length: 10 vs 40 frames, each in a fresh process
   (peak resident set size; on a GPU torch.cuda.max_memory_allocated).
3. Where a TecoGAN training step spends its time: data loading, FNet, SRNet (the recurrence), the
   discriminator and the VGG feature loss, each forward + backward timed alone on the same batch.

    python bench/video.py                 # all three, prints a Markdown table (docs/benchmarks.md has the figures)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))



def _gen(blocks: int, device: str):
    from lightning_sr.networks import build_generator

    return build_generator({"arch": "frnet", "res_blocks": blocks, "channels": 64, "scale": 4}).to(device).eval()


def fps(device: str, frames: int = 6, rounds: int = 3) -> dict[int, float]:
    gens = {b: _gen(b, device) for b in (10, 1)}
    lr = [torch.rand(1, 3, 144, 180, device=device) for _ in range(frames)]
    times: dict[int, list[float]] = {b: [] for b in gens}
    for g in gens.values():  # warm-up
        list(g.infer_sequence(iter(lr[:2])))
    for _ in range(rounds):
        for b, g in gens.items():
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _out in g.infer_sequence(iter(lr)):
                pass
            if device == "cuda":
                torch.cuda.synchronize()
            times[b].append(frames / (time.perf_counter() - t0))
    return {b: statistics.median(v) for b, v in times.items()}


CHILD = """
import resource, sys, torch
sys.path.insert(0, {root!r})
from lightning_sr.networks import build_generator
dev, n = sys.argv[1], int(sys.argv[2])
g = build_generator({{"arch": "frnet", "res_blocks": 10, "channels": 64, "scale": 4}}).to(dev).eval()
def frames():
    for _ in range(n):
        yield torch.rand(1, 3, 144, 180, device=dev)
for out in g.infer_sequence(frames()):
    out = out.cpu()  # a consumer that writes each frame out and keeps nothing
peak = torch.cuda.max_memory_allocated() / 2**20 if dev == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(peak)
"""


def peak_memory(device: str) -> dict[int, float]:
    out = {}
    for n in (10, 40):
        p = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT)), device, str(n)], capture_output=True,
                           text=True, check=True)
        out[n] = float(p.stdout.strip().splitlines()[-1])
    return out


def train_breakdown(device: str, batch: int = 2, n_frames: int = 5, patch: int = 64, repeats: int = 3) -> dict:
    """Forward + backward of each part of a TecoGAN step on the same batch (ping-pong: 2T-1 frames)."""
    import torch.nn.functional as F

    from lightning_sr.config import build_datamodule
    from lightning_sr.lit_modules.video import pingpong
    from lightning_sr.losses import CosineFeatureLoss
    from lightning_sr.networks import SpatioTemporalDiscriminator
    from lightning_sr.networks.video import backward_warp, upscale_flow
    from tests.conftest import compose

    cfg = compose(["model=tecogan", "data=embedded_video", f"data.patch_size={patch}", f"data.n_frames={n_frames}",
                   f"data.batch_size={batch}"])
    dm = build_datamodule(cfg)
    dm.setup("fit")
    g = _gen(10, device).train()
    d = SpatioTemporalDiscriminator(patch, 64).to(device)
    vgg = CosineFeatureLoss(pretrained=False).to(device)

    def data():
        items = [dm.train_set[i] for i in range(batch)]
        return torch.stack([x["lr"] for x in items]).to(device), torch.stack([x["hr"] for x in items]).to(device)

    lr, hr = data()
    lr, hr = pingpong(lr), pingpong(hr)
    n, t, c, h, w = lr.shape

    def fnet():
        flow = g.fnet(lr[:, 1:].flatten(0, 1), lr[:, :-1].flatten(0, 1))
        flow.sum().backward()

    def srnet():
        with torch.no_grad():
            flows = upscale_flow(g.fnet(lr[:, 1:].flatten(0, 1), lr[:, :-1].flatten(0, 1)), 4).view(n, t - 1, 2, 4 * h, 4 * w)
        prev = g.srnet(lr[:, 0], lr.new_zeros(n, 48, h, w))
        outs = [prev]
        for i in range(1, t):
            prev = g.srnet(lr[:, i], F.pixel_unshuffle(backward_warp(prev, flows[:, i - 1]), 4))
            outs.append(prev)
        torch.stack(outs, 1).mean().backward()

    def disc():
        k = t // 3
        x = torch.rand(n * k, 27, patch, patch, device=device)
        (d(x).mean() + d(x.detach()).mean()).backward()

    def feature():
        sr = hr.flatten(0, 1).clone().requires_grad_(True)
        vgg(sr, hr.flatten(0, 1)).backward()

    parts = {"data loading": data, "FNet": fnet, "SRNet": srnet, "discriminator": disc, "VGG feature loss": feature}
    times = {k: [] for k in parts}
    for _ in range(repeats):
        for k, fn in parts.items():
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            times[k].append(time.perf_counter() - t0)
            g.zero_grad(set_to_none=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    total = sum(med.values())
    return {k: {"ms": round(v * 1000, 1), "share": round(v / total, 3)} for k, v in med.items()}


def main() -> None:
    from lightning_sr.cost import cpu_name
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device
    name = torch.cuda.get_device_name() if dev == "cuda" else f"{cpu_name()}, {torch.get_num_threads()} threads"
    res = {"device": name, "fps": fps(dev), "peak_memory_mb": peak_memory(dev), "train_step": train_breakdown(dev)}
    print(f"## Video benchmarks on {name}\n")
    print("| SRNet blocks | frames/s at 180x144 LR (720x576 out) |\n|---|---|")
    for b, v in res["fps"].items():
        print(f"| {b} | {v:.2f} |")
    m = res["peak_memory_mb"]
    print(f"\nPeak memory of streaming inference: 10 frames {m[10]:.0f} MB, 40 frames {m[40]:.0f} MB "
          f"(ratio {m[40] / m[10]:.3f})\n")
    print("| part of a TecoGAN training step | ms | share |\n|---|---|---|")
    for k, v in res["train_step"].items():
        print(f"| {k} | {v['ms']} | {v['share']:.1%} |")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
