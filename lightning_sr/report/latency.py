"""CPU latency of a report's rows measured side by side, in one process.

Every job measures its own latency when it ends (``lightning_sr.cost``), at whatever load the machine had then: on
a shared machine two jobs of one architecture can differ by 3x. A comparison therefore times its rows together:
each row's final model (a training job's ``last_ckpt``, its ``int8.pt2`` when it wrote one, an evaluation job's
``ckpt_path``) is loaded, and all are timed in alternated rounds with the one timing function
(:func:`lightning_sr.cost.compiled_latency_ms`: batch-1 forwards on the cost input; int8 programs compiled, fp32
models eager). Each row's figure is its fastest round: other work only ever adds time, in bursts that a median of
alternated rounds does not always cancel. Jobs of several seeds share their row's architecture: the first is
timed. Video generators (two inputs per step) are not timed here::

    python -m lightning_sr.report outputs/cpu_results/reports/q3_macs50 --reference name=uniform50
    python -m lightning_sr.report.latency outputs/cpu_results/reports/q3_macs50

reads the rows of the folder's ``report.csv`` (built first; any report: named jobs or a plain multirun) and writes
``latency.csv`` (row, model file, fastest ms, ratio to the report's reference row, threads, rounds, CPU) into the
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
from lightning_sr.errors import ConfigError, LightningSRError
from lightning_sr.fs import atomic_write
from lightning_sr.inference import is_recurrent
from lightning_sr.report.jobs import find_job_dirs, load_job
from lightning_sr.report.results_doc import LATENCY_FILE as FILE
from lightning_sr.report.results_doc import measured_rows, row_labels

COLUMNS = ("row", "model_file", "latency_ms", "ratio", "threads", "rounds", "input", "cpu")


def row_models(report_dir: Path) -> tuple[dict[str, Path], str]:
    """({row: model file}, the reference row) of the report in ``report_dir``: its report.csv's measured rows under
    the names the results table gives them (:func:`~lightning_sr.report.results_doc.row_labels`), each timed with
    the model of its first finished job that has one (a row's seeds share one architecture); an int8 row with that
    job's ``int8.pt2``. A row without such a job is left out, with one line saying so."""
    csv_path = report_dir / "report.csv"
    if not csv_path.is_file():
        raise ConfigError(f"{csv_path} is missing: build the report first (python -m lightning_sr.report {report_dir})")
    header, rows = measured_rows(csv_path)
    jobs = {j.name: j for j in (load_job(d) for d in find_job_dirs(report_dir))}
    out: dict[str, Path] = {}
    ref = ""
    for r, label in zip(rows, row_labels(header, rows), strict=True):
        ref = label if r.get("reference") == "reference" else ref
        for name in r.get("job", "").split(","):
            job = jobs.get(name)
            if job is None or job.status != "finished":
                continue
            fp32 = (job.metrics or {}).get("last_ckpt") or (job.metrics or {}).get("ckpt_path")
            if r.get("source") == "int8":
                path = job.dir / "checkpoints" / "int8.pt2"
            else:
                path = Path(str(fp32)).expanduser() if fp32 else None
            if path is not None and path.is_file():
                out[label] = path
                break
        else:
            print(f"[latency] {label}: no finished job of this row has its model file ({r.get('job')}); not timed")
    return out, ref


def measure(report_dir: Path, reference: str | None = None, rounds: int = 20, threads: int | None = None,
            input_size: tuple[int, int, int] = (3, 128, 128)) -> list[dict]:
    """Time the rows of ``report_dir`` side by side and write its ``latency.csv``; returns the rows written."""
    files, ref = row_models(report_dir)
    if reference:  # name=X, X, or a row label as the results table writes it
        ref = next((x for x in (reference, reference.split("=", 1)[-1]) if x in files), None)
        if ref is None:
            raise ConfigError(f"--reference {reference} matches no timed row of {report_dir / 'report.csv'}; rows: "
                              f"{', '.join(files)}")
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
    base = ms.get(ref)
    if base is None:
        print(f"[latency] {report_dir}: the reference row {ref or '(none)'} was not timed; milliseconds without ratios")
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
    ap.add_argument("--reference", default=None,
                    help="the row the ratios are to (name=X or X; default: the report's reference row)")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, as the jobs)")
    a = ap.parse_args(argv)
    try:
        measure(a.report_dir, a.reference, a.rounds, a.threads)
    except LightningSRError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
