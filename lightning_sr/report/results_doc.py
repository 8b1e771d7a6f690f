"""Tables of a results document filled from sweep reports, so that no figure in it is typed by hand.

A markdown document marks where a report's table goes::

    <!-- report:q2_depth8 -->
    (replaced by the compact table of <reports>/q2_depth8/report.csv)
    <!-- /report:q2_depth8 -->

``fill(doc, reports)`` rewrites every marked block from the report of that name (its measured rows: mean ± std over
seeds, the paired difference to the reference row with its 95 % interval, cost and budget); a report that does not
exist yet leaves "not run yet" in the block. Used by ``sweeps/cpu_results.sh report`` for docs/results.md::

    python -m lightning_sr.report.results_doc docs/results.md outputs/cpu_results/reports
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

from lightning_sr.fs import atomic_write

BLOCK = re.compile(r"(<!-- report:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /report:(?P=name) -->)", re.S)
METRICS = (("psnr", "PSNR", ".2f"), ("ssim", "SSIM", ".4f"), ("lpips", "LPIPS", ".4f"), ("tof", "tOF", ".3f"),
           ("tlp", "tLP100", ".3f"))
DELTAS = (("psnr", "ΔPSNR", "+.3f"), ("lpips", "ΔLPIPS", "+.4f"))
MEASURED = ("measured", "int8")
LATENCY_FILE = "latency.csv"  # written by lightning_sr.report.latency: the rows timed side by side in one process


def read_latency(report_dir: Path) -> dict[str, dict[str, str]]:
    """{row: its line of the report's latency.csv} ({} when the rows were not timed side by side)."""
    p = Path(report_dir) / LATENCY_FILE
    if not p.is_file():
        return {}
    with open(p, newline="") as f:
        return {r["row"]: r for r in csv.DictReader(f)}


def row_label(row: dict[str, str], header: list[str]) -> str:
    """What a measured row of a report.csv is called in the results table and in ``latency.csv``: its ``name``
    where the jobs were named, else its job folder(s); an int8 program's row adds " (int8)"."""
    label = (row.get("name") if "name" in header else "") or row.get("job", "")
    return label + " (int8)" if row.get("source") == "int8" else label


def row_labels(header: list[str], rows: list[dict[str, str]]) -> list[str]:
    """:func:`row_label` of each row, made unique: a label several rows share (``name`` swept together with another
    key) gets the row's job folders added, ``b [b_s0]``."""
    labels = [row_label(r, header) for r in rows]
    shared = {x for x in labels if labels.count(x) > 1}
    return [f"{x} [{r.get('job', '')}]" if x in shared else x for x, r in zip(labels, rows, strict=True)]


def measured_rows(report_csv: Path) -> tuple[list[str], list[dict[str, str]]]:
    """(header, the measured and int8 rows) of a report.csv."""
    with open(report_csv, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), [r for r in reader if r.get("source") in MEASURED]


def _f(v: str, fmt: str) -> str:
    try:
        return format(float(v), fmt)
    except (TypeError, ValueError):
        return ""


def _sets(header: list[str]) -> list[str]:
    seen: list[str] = []
    for c in header:
        parts = c.split("/")
        if len(parts) == 2 and parts[1] == "psnr" and parts[0] not in seen:
            seen.append(parts[0])
    return seen


def compact_table(report_csv: Path) -> str:
    """The measured rows of a report.csv as one short markdown table (name, seeds, cost, per set: metrics with
    std, paired differences with their 95 % interval, `*` where it excludes 0; steps incl. the start checkpoint)."""
    header, rows = measured_rows(report_csv)
    sets = _sets(header)
    labels = row_labels(header, rows)
    ref = next((x for x, r in zip(labels, rows, strict=True) if r.get("reference") == "reference"), "")
    cols = ["row", "n", "params", "GMACs"]
    side = read_latency(report_csv.parent)  # side by side in one process; per-job latencies are not comparable
    if side:
        cols.append("CPU latency vs reference (side by side)")
    per_set = []
    for s in sets:
        for key, title, fmt in METRICS:
            if any(r.get(f"{s}/{key}") for r in rows):
                per_set.append((f"{s}/{key}", f"{s} {title}", fmt, True))
        for key, title, fmt in DELTAS:
            if any(r.get(f"{s}/delta_{key}") for r in rows):
                per_set.append((f"{s}/delta_{key}", f"{s} {title} (95 % CI)", fmt, False))
    cols += [t for _, t, _, _ in per_set] + ["steps (incl. start)", "train wall time (s)"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r, name in zip(rows, labels, strict=True):
        macs = _f(r.get("macs"), "") and format(float(r["macs"]) / 1e9, ".3f")
        cells = [name, r.get("n") or "1", _f(r.get("params"), ",.0f"), macs]
        if side:
            t = side.get(name)
            # the ratio: milliseconds depend on the load at the time of timing (they are in latency.csv)
            cells.append((f"{_f(t['ratio'], '.2f')}x" if t.get("ratio") else f"{_f(t['latency_ms'], '.1f')} ms")
                         if t else "")
        for key, _, fmt, is_metric in per_set:
            v = _f(r.get(key), fmt)
            if is_metric and v and r.get(f"{key}_std"):
                v += " ± " + _f(r.get(f"{key}_std"), fmt.lstrip("+"))
            if not is_metric:
                if r.get(key) == "reference":
                    v = "reference"
                elif v and r.get(f"{key}_lo") in ("nan", "NaN"):
                    v += " (one pair: no interval)"
                elif v and r.get(f"{key}_lo"):
                    v += f" [{_f(r.get(f'{key}_lo'), fmt)}, {_f(r.get(f'{key}_hi'), fmt)}]"
                    v += " *" if r.get(f"{key}_sig") == "*" else ""
            cells.append(v)
        cells += [_f(r.get("steps_total") or r.get("global_step"), ",.0f"), _f(r.get("train_time_s"), ",.0f")]
        lines.append("| " + " | ".join(cells) + " |")
    note = f"\n\nΔ: paired difference to `{ref}` per image (and seed); `*`: the 95 % interval excludes 0." if ref else ""
    if side:
        any_row = next(iter(side.values()))
        note += (f" Latency: batch-1 forward on a {any_row['input']} input, fastest of {any_row['rounds']} alternated "
                 f"rounds in one process ({any_row['threads']} threads, {any_row['cpu']}), as a ratio to the "
                 f"reference row (milliseconds: `latency.csv` beside the report).")
    return "\n".join(lines) + note + f"\n\n_From `{report_csv}`._\n"


def fill(doc: Path, reports: Path) -> list[str]:
    """Rewrite every ``<!-- report:NAME -->`` block of ``doc`` from ``reports/NAME/report.csv``; return the names
    filled."""
    text = doc.read_text()
    filled: list[str] = []

    def sub(m: re.Match) -> str:
        csv_path = reports / m["name"] / "report.csv"
        if not csv_path.is_file():
            return m.group(1) + "Not run yet.\n" + m.group(4)
        filled.append(m["name"])
        return m.group(1) + compact_table(csv_path) + m.group(4)

    new = BLOCK.sub(sub, text)
    if new != text:
        atomic_write(doc, new)
    return filled


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("doc", type=Path)
    ap.add_argument("reports", type=Path)
    a = ap.parse_args(argv)
    names = fill(a.doc, a.reports)
    print(f"{a.doc}: filled {len(names)} table(s): {', '.join(names) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
