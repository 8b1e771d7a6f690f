"""int8 quantization benchmark: is the int8 program smaller and faster than the fp32 model on this CPU?

SRResNet-16 (64 channels, x4, PReLU, bicubic skip), batch 1, CPU; three variants timed in alternated rounds in one
process, with the same threads:

* ``eager fp32``: the model as built (reference);
* ``compiled fp32``: ``lightning_sr.cost.compile_cpu`` (inductor, freezing, dynamic height/width);
* ``compiled int8``: the same model after lightning-sr's PTQ path (``pt2e_quant.capture`` -> ``pt2e_quant.prepare`` with the
  SR quantizer -> calibration -> ``pt2e_quant.convert``), written to ``int8.pt2`` by ``int8_io.save_int8``, read back by
  ``load_generator`` and compiled by the same ``compile_cpu`` (oneDNN u8s8 convolutions).
  ``--variants`` adds the torchao x86 recipe without lightning-sr's SR options (``plain int8``).

Latency does not depend on the weights; the calibration uses Set5's LR images (or random inputs without them).
The machine is shared: every repetition records the CPU time other processes used during it (``/proc/stat``);
the table gives the median of all repetitions and of the "quiet" ones (foreign load < 5 % of the CPUs).

    python bench/pt2e_quant.py                         # LR 64x64, 2 threads; about 3 minutes on 2 cores
    python bench/pt2e_quant.py --size 256 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_sr.checkpoint import load_generator  # noqa: E402
from lightning_sr.cost import compile_cpu, state_dict_bytes  # noqa: E402
from lightning_sr.networks import build_generator  # noqa: E402
from lightning_sr.transforms import int8_io, pt2e_quant  # noqa: E402

SET5_LR = Path(__file__).resolve().parents[2] / "shared" / "data" / "Set5" / "LR_bicubic" / "X4"
HZ = os.sysconf("SC_CLK_TCK")



def _jiffies() -> tuple[int, int]:
    """(busy jiffies of the whole machine, jiffies of this process)."""
    f = open("/proc/stat").readline().split()[1:]
    busy = sum(int(v) for v in f) - int(f[3]) - int(f[4])
    own = open(f"/proc/{os.getpid()}/stat").read().rsplit(")", 1)[1].split()
    return busy, int(own[11]) + int(own[12])


def calibration_inputs(n: int, size: int) -> list[torch.Tensor]:
    from lightning_sr.ops.image_io import read_rgb

    files = sorted(SET5_LR.glob("*.png"))[:n] if SET5_LR.is_dir() else []
    if files:
        return [torch.from_numpy(read_rgb(f)).permute(2, 0, 1)[None].float().div(255) for f in files]
    return [torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(i)) for i in range(n)]


def int8_program(model: torch.nn.Module, settings: pt2e_quant.QuantSettings, calib: list[torch.Tensor], path: Path,
                 spec: dict) -> tuple[torch.nn.Module, float]:
    gm, outputs, _ = pt2e_quant.capture(model, training=False)
    prepared = pt2e_quant.prepare(gm, settings, qat=False)
    with torch.no_grad():
        for x in calib:
            prepared(x)
    meta = int8_io.save_int8(pt2e_quant.convert(prepared), path, {"technique": "ptq", "generator": spec, "outputs": outputs,
                                                             "attrs": {"scale": spec["scale"]}})
    gen, _ = load_generator(path)
    return gen, meta["size_mb"]


def main(argv: list[str] | None = None) -> dict:
    from lightning_sr.cost import cpu_name
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--res-blocks", type=int, default=16)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--act", default="prelu")
    ap.add_argument("--size", type=int, default=64, help="LR height and width")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=3, help="forwards per variant and round (median)")
    ap.add_argument("--variants", action="store_true", help="also the plain torchao x86 recipe")
    ap.add_argument("--ckpt", default=None, help="fp32 checkpoint to quantize (default: fresh weights)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)

    torch.manual_seed(0)
    if a.ckpt:
        model, spec = load_generator(a.ckpt)
    else:
        spec = {"arch": "srresnet", "res_blocks": a.res_blocks, "channels": a.channels, "scale": 4, "norm": "none",
                "act": a.act, "skip": "bicubic", "res_scale": 1.0}
        model = build_generator(spec)
    model.eval()
    calib = calibration_inputs(5, a.size)
    tmp = Path(tempfile.mkdtemp(prefix="lsr_bench_quant_"))
    fp32_file = tmp / "fp32.pt"
    torch.save(model.state_dict(), fp32_file)
    fp32_mb = fp32_file.stat().st_size / 2**20

    t0 = time.perf_counter()
    int8, int8_mb = int8_program(model, pt2e_quant.QuantSettings(), calib, tmp / "int8.pt2", spec)
    variants = {"eager fp32": model, "compiled fp32": compile_cpu(model), "compiled int8": int8.compiled()}
    sizes = {"eager fp32": fp32_mb, "compiled fp32": fp32_mb, "compiled int8": int8_mb}
    if a.variants:
        plain = pt2e_quant.QuantSettings(shuffle_int8=False, act_int8=False, skip_fp32=False)
        g, mb = int8_program(model, plain, calib, tmp / "plain.pt2", spec)
        variants["compiled int8 (plain x86 recipe)"] = g.compiled()
        sizes["compiled int8 (plain x86 recipe)"] = mb
    prep_s = time.perf_counter() - t0

    x = torch.rand(1, 3, a.size, a.size)
    torch.set_num_threads(a.threads)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    t0 = time.perf_counter()
    with torch.inference_mode():
        for f in variants.values():  # the first call of a compiled variant compiles it
            for _ in range(2):
                f(x)
        compile_s = time.perf_counter() - t0
        ncpu = os.cpu_count() or 1
        for _ in range(a.rounds):
            for k, f in variants.items():
                for _ in range(a.repeats):
                    b0, o0 = _jiffies()
                    t = time.perf_counter()
                    f(x)
                    dt = time.perf_counter() - t
                    b1, o1 = _jiffies()
                    foreign = max(0, (b1 - b0) - (o1 - o0)) / HZ / (dt * ncpu)
                    times[k].append((dt * 1000, foreign))
    torch.set_num_threads(1)

    ref = "compiled fp32"
    res: dict = {"cpu": cpu_name(), "vnni": pt2e_quant.has_vnni(), "capability": torch.backends.cpu.get_cpu_capability(),
                 "threads": a.threads, "lr": f"{a.size}x{a.size}", "model": spec, "rounds": a.rounds,
                 "repeats": a.repeats, "prepare_s": round(prep_s, 1), "compile_s": round(compile_s, 1),
                 "variants": {}}
    med_all = {k: statistics.median(ms for ms, _ in v) for k, v in times.items()}
    for k, v in times.items():
        quiet = [ms for ms, fg in v if fg < 0.05]
        res["variants"][k] = {
            "ms": round(med_all[k], 2), "ms_quiet": round(statistics.median(quiet), 2) if quiet else None,
            "quiet_reps": len(quiet), "reps": len(v), "foreign_load": round(statistics.median(fg for _, fg in v), 3),
            "vs_compiled_fp32": round(med_all[k] / med_all[ref], 3), "size_mb": round(sizes[k], 3),
            "size_ratio": round(sizes[k] / fp32_mb, 3)}
    res["fp32_state_dict_mb"] = round(state_dict_bytes(model) / 2**20, 3)

    print(f"CPU: {res['cpu']} ({res['capability']}, VNNI/AMX: {res['vnni']}), {a.threads} threads, "
          f"SRResNet-{spec['res_blocks']} x4 {spec['channels']}ch {spec['act']}, LR {res['lr']}, batch 1")
    print(f"{'variant':34s} {'ms (all)':>9s} {'ms (quiet)':>11s} {'quiet/reps':>10s} {'foreign':>8s} "
          f"{'/comp fp32':>10s} {'MB':>7s} {'size x':>7s}")
    for k, r in res["variants"].items():
        print(f"{k:34s} {r['ms']:9.1f} {r['ms_quiet'] if r['ms_quiet'] is not None else float('nan'):11.1f} "
              f"{r['quiet_reps']:>4d}/{r['reps']:<5d} {r['foreign_load']:8.2f} {r['vs_compiled_fp32']:10.3f} "
              f"{r['size_mb']:7.3f} {r['size_ratio']:7.3f}")
    print(f"(prepare+calibrate+convert+save {res['prepare_s']} s, compile {res['compile_s']} s)")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
