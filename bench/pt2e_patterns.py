"""QAT graph rewrites: torchao's full pattern path against ``pt2e_quant.only_matching_patterns`` (which skips the
pattern families whose op the graph lacks), side by side in this one process.

One round = capture a generator (training graph) -> prepare for QAT -> two train/eval switches -> convert to int8,
timed step by step, once with the skip and once without (alternated, the order swapped every round); medians and
the full/skip ratio. The two paths give the same graphs and tensors (tests/transforms/test_pt2e_quant.py).

    python bench/pt2e_patterns.py [--norm batch|none] [--res-blocks 2] [--channels 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import time
import warnings

import torch

STEPS = ("capture", "prepare", "switches", "convert")


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        return next(ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name"))
    except Exception:  # noqa: BLE001 -- informational only
        return platform.processor() or "unknown CPU"


def one_round(skip: bool, spec: dict) -> dict[str, float]:
    from lightning_sr.networks import build_generator
    from lightning_sr.transforms import pt2e_quant

    pt2e_quant.SKIP_ABSENT_PATTERNS = skip
    t = {}
    s = time.perf_counter()
    gm, _, _ = pt2e_quant.capture(build_generator(spec).train(), training=True)
    t["capture"] = time.perf_counter() - s
    s = time.perf_counter()
    prepared = pt2e_quant.prepare(gm, pt2e_quant.QuantSettings(), qat=True)
    t["prepare"] = time.perf_counter() - s
    s = time.perf_counter()
    for mode in (False, True):
        pt2e_quant.set_mode(prepared, mode)
    t["switches"] = time.perf_counter() - s
    s = time.perf_counter()
    pt2e_quant.convert(prepared)
    t["convert"] = time.perf_counter() - s
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--norm", default="batch", choices=("batch", "none"))
    ap.add_argument("--res-blocks", type=int, default=2)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    spec = {"arch": "srresnet", "res_blocks": a.res_blocks, "channels": a.channels, "scale": 4, "norm": a.norm,
            "act": "prelu", "skip": "none", "res_scale": 1.0}
    one_round(True, spec)  # warm-up: imports, first export
    times: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    for r in range(a.rounds):
        for skip in ((True, False) if r % 2 == 0 else (False, True)):
            times[skip].append(one_round(skip, spec))
    print(f"SRResNet-{a.res_blocks}/{a.channels} norm={a.norm}, torch {torch.__version__}, {cpu_name()}, "
          f"{torch.get_num_threads()} threads, {a.rounds} rounds, medians (s)")
    print("| step | torchao full path | only matching patterns | ratio |")
    print("|---|---|---|---|")
    for step in (*STEPS, "total"):
        med = {k: statistics.median(sum(x.values()) if step == "total" else x[step] for x in v)
               for k, v in times.items()}
        print(f"| {step} | {med[False]:.2f} | {med[True]:.2f} | {med[False] / max(med[True], 1e-9):.1f}x |")


if __name__ == "__main__":
    main()
