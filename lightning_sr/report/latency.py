"""CPU latency of a report's rows measured side by side, in one process.

Every job measures its own latency when it ends (``lightning_sr.cost``), at whatever load the machine had then: on
a shared machine two jobs of one architecture can differ by 3x. A comparison therefore times its rows together:
each row's final model (a training job's ``last_ckpt``, its ``int8.pt2`` when it wrote one, an evaluation job's
``ckpt_path``) is loaded, and all are timed in alternated rounds with the one timing function
(:func:`lightning_sr.cost.compiled_latency_ms`: batch-1 forwards on the cost input; int8 programs compiled, fp32
models eager). Each row's figure is its fastest round: other work only ever adds time, in bursts that a median of
alternated rounds does not always cancel. Jobs of several seeds share their row's architecture: the first is
timed. Video generators (two inputs per step) are not timed here::

    python -m lightning_sr.report.latency outputs/cpu_results/reports/q3_macs50 [--reference name=uniform50]

writes ``latency.csv`` (row, model file, fastest ms, ratio to the reference row, threads, rounds, CPU) into the
report folder; ``lightning_sr.report.results_doc`` shows the ratios in place of the per-job latencies.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from lightning_sr.checkpoint import load_generator
from lightning_sr.cost import compiled_latency_ms, cpu_name
from lightning_sr.fs import atomic_write
from lightning_sr.inference import is_recurrent
from lightning_sr.report.jobs import Job, find_job_dirs, load_job
from lightning_sr.report.results_doc import LATENCY_FILE as FILE

COLUMNS = ("row", "model_file", "latency_ms", "ratio", "threads", "rounds", "input", "cpu")


def row_models(jobs: list[Job]) -> dict[str, Path]:
    """{row name: model file} of the finished jobs, one per row (the first seed); a job's int8 program is a row of
    its own, "<name> (int8)", as in the report."""
    out: dict[str, Path] = {}
    for j in jobs:
        m = j.metrics or {}
        if j.status != "finished":
            continue
        name = str(m.get("name") or j.select("name") or j.name)
        fp32 = m.get("last_ckpt") or m.get("ckpt_path")
        if fp32 and name not in out:
            out[name] = Path(str(fp32)).expanduser()
        int8 = j.dir / "checkpoints" / "int8.pt2"
        if m.get("last_ckpt") and int8.is_file() and f"{name} (int8)" not in out:
            out[f"{name} (int8)"] = int8
    return out


def measure(report_dir: Path, reference: str | None = None, rounds: int = 20, threads: int | None = None,
            input_size: tuple[int, int, int] = (3, 128, 128)) -> list[dict]:
    """Time the rows of ``report_dir`` side by side and write its ``latency.csv``; returns the rows written."""
    files = row_models([load_job(d) for d in find_job_dirs(report_dir)])
    models, compiled, skipped = {}, [], []
    for name, path in files.items():
        gen, spec = load_generator(path, what=f"{name}'s model")
        if is_recurrent(gen):
            skipped.append(name)
            continue
        models[name] = gen
        if spec.get("_int8"):
            compiled.append(name)
    if not models:
        print(f"[latency] {report_dir}: no image model to time" + (f" ({', '.join(skipped)}: video)" if skipped else ""))
        return []
    # the fastest round of each: other work on the machine only ever adds time, and it comes in bursts that a
    # median of alternated rounds does not always cancel (seen: 4x between two copies of one architecture)
    ms, n = compiled_latency_ms(models, input_size, warmup=2, repeats=rounds, threads=threads, compiled=compiled,
                                reduce=min)
    ref = (reference or "").split("=", 1)[-1]
    base = ms.get(ref)
    cpu = cpu_name()
    rows = [{"row": k, "model_file": str(files[k]), "latency_ms": f"{v:.2f}",
             "ratio": f"{v / base:.3f}" if base else "", "threads": n, "rounds": rounds,
             "input": "x".join(map(str, input_size)), "cpu": cpu} for k, v in ms.items()]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write(report_dir / FILE, buf.getvalue())
    for r in rows:
        print(f"[latency] {r['row']}: {r['latency_ms']} ms" + (f" ({r['ratio']}x {ref})" if r["ratio"] else ""))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("report_dir", type=Path)
    ap.add_argument("--reference", default=None, help="the row the ratios are to (name=X or X)")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, as the jobs)")
    a = ap.parse_args(argv)
    measure(a.report_dir, a.reference, a.rounds, a.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
