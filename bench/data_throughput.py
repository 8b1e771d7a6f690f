"""Data throughput (GPU readiness): the training loader's samples/s against the model's training samples/s.

DIV2K-sized synthetic HR images (2040 x 1356 PNGs, smooth texture + noise so that they compress like photos) are
written to a temporary folder this benchmark owns (removed at the end, with its decoded cache). The loader is the
real one (``data=folder``: decode once into the disk cache, then random 96 px HR / 24 px LR patches x4 with flips,
batch 16), timed after its first batch; decoding once is timed apart. The model is SRResNet-16 (64 channels)
training at the same batch (L1, Adam) on ``--device``. Both in this one process, alternated round by round;
medians. Goal on a GPU configuration: loader >= 5x the model's rate.

    python bench/data_throughput.py [--images 4] [--batches 8] [--steps 2] [--rounds 3] [--workers 0,2]
                                    [--device cpu|cuda] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
SPEC = {"arch": "srresnet", "res_blocks": 16, "channels": 64, "scale": 4, "norm": "none", "act": "prelu",
        "skip": "bicubic", "res_scale": 1.0}
W, H = 2040, 1356


def write_images(folder: Path, n: int) -> None:
    from lightning_sr.ops.image_io import write_rgb

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    for i in range(n):
        img = np.stack([np.sin(xx / (37 + i)) * 70 + 120, np.cos(yy / (23 + i)) * 70 + 120,
                        np.sin((xx + yy) / (51 + i)) * 60 + 110], -1) + rng.normal(0, 6, (H, W, 3))
        write_rgb(folder / f"{i:04d}.png", np.clip(img, 0, 255).astype(np.uint8))


def make_loader(folder: Path, workers: int, batch: int, patch: int):
    from hydra import compose, initialize_config_dir

    from lightning_sr.config import build_datamodule

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", ["data=folder", f"data.hr_dir={folder}", f"data.val_hr_dir={folder}",
                                "data.val_split=0", f"data.num_workers={workers}", f"data.batch_size={batch}",
                                f"data.patch_size={patch}", "data.iters_per_epoch=100000", "data.pin_memory=false",
                                "scale=4"])
    dm = build_datamodule(cfg, seed=0)
    t0 = time.perf_counter()
    dm.setup("fit")
    return dm.train_dataloader(), time.perf_counter() - t0


def loader_rate(it, batches: int, batch: int) -> float:
    t0 = time.perf_counter()
    for _ in range(batches):
        b = next(it)
        assert b["lr"].shape[0] == batch
    return batches * batch / (time.perf_counter() - t0)


def model_rate(model, opt, device: torch.device, steps: int, batch: int, patch: int) -> float:
    g = torch.Generator().manual_seed(0)
    lr = torch.rand(batch, 3, patch // 4, patch // 4, generator=g).to(device)
    hr = torch.rand(batch, 3, patch, patch, generator=g).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = F.l1_loss(model(lr), hr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync()
    return steps * batch / (time.perf_counter() - t0)



def main() -> None:
    from lightning_sr.cost import cpu_name
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--batches", type=int, default=8, help="loader batches timed per round")
    ap.add_argument("--steps", type=int, default=2, help="model training steps timed per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", default="0,2", help="comma-separated data.num_workers values")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=96, help="HR patch (LR = patch / 4)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    from lightning_sr.networks import build_generator

    with tempfile.TemporaryDirectory(prefix="lsr_data_throughput_") as tmp:
        os.environ["LSR_CACHE"] = str(Path(tmp) / "cache")  # the decoded cache goes with the folder
        folder = Path(tmp) / "hr"
        t0 = time.perf_counter()
        write_images(folder, a.images)
        png_mb = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
        print(f"{a.images} synthetic {W}x{H} PNGs ({png_mb:.1f} MB) written in {time.perf_counter() - t0:.1f} s")
        torch.manual_seed(0)
        model = build_generator(SPEC).to(device).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        model_rate(model, opt, device, 1, a.batch, a.patch)  # warm-up
        loaders = {}
        for w in (int(x) for x in a.workers.split(",")):
            dl, setup_s = make_loader(folder, w, a.batch, a.patch)
            it = iter(dl)
            t1 = time.perf_counter()
            next(it)  # workers start, first batch
            print(f"loader workers={w}: setup (decode once into the cache) {setup_s:.1f} s, first batch "
                  f"{time.perf_counter() - t1:.2f} s")
            loaders[w] = it
        rates: dict[str, list[float]] = {"model": [], **{f"loader w={w}": [] for w in loaders}}
        for _ in range(a.rounds):
            rates["model"].append(model_rate(model, opt, device, a.steps, a.batch, a.patch))
            for w, it in loaders.items():
                rates[f"loader w={w}"].append(loader_rate(it, a.batches, a.batch))
        med = {k: statistics.median(v) for k, v in rates.items()}
        where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{cpu_name()}, {a.threads} thread(s)"
        print(f"\nbatch {a.batch}, HR patch {a.patch} (LR {a.patch // 4}), x4; model on {device} ({where}); "
              f"medians of {a.rounds} rounds")
        print(f"{'':22s}{'samples/s':>10s}{'x model':>9s}")
        for k, v in med.items():
            print(f"{k:22s}{v:10.1f}{v / med['model']:9.2f}")
        for it in loaders.values():
            del it


if __name__ == "__main__":
    main()
