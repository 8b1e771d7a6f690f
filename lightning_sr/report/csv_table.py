"""``report.csv``: every row of the collected sweep, every column."""

from __future__ import annotations

import csv
from pathlib import Path

from lightning_sr.metrics_json import COST_KEYS, METRICS
from lightning_sr.report.collect import SweepReport, ordered
from lightning_sr.report.compare import STD


def csv_columns(rep: SweepReport) -> list[str]:
    cols = [*rep.keys, "job", "source", "status", "exit", "label"]
    cols += list(COST_KEYS)
    cols += list(METRICS)
    present = set().union(*[r.keys() for r in rep.rows]) if rep.rows else set()
    sets = list(rep.sets)
    ordered(sets, sorted({k.split("/")[0] for k in present if k.count("/") == 1 and k.split("/")[1] in METRICS}))
    exits = list(rep.exits)
    ordered(exits, sorted({k.split("/")[0] for k in present if k.count("/") == 1 and k.split("/")[1] in COST_KEYS}))
    ordered(exits, sorted({k.split("/")[1] for k in present if k.count("/") == 2}))
    cols += [f"{s}/{m}" for s in sets for m in METRICS]
    cols += [f"{e}/{k}" for e in exits for k in COST_KEYS]
    cols += [f"{s}/{e}/{m}" for s in sets for e in exits for m in METRICS]
    cols += ["train_time_s", "global_step", "images_seen", "steps_total", "images_total", "machine", "published_source", "reproduced",
             "reproduced_detail", "protocol_differences", "error"]
    ordered(cols, sorted(c for c in present if not c.endswith(STD)))
    if "n" in present:  # seed groups: n after status, every mean's std right after it
        cols.insert(cols.index("status") + 1, "n")
    cols = [x for c in cols for x in ((c, c + STD) if c + STD in present else (c,))]
    return [c for c in dict.fromkeys(cols) if c in present or c in (*rep.keys, "job", "source", "status")]


def write_csv(rep: SweepReport, path: Path) -> Path:
    cols = csv_columns(rep)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rep.rows:
            w.writerow({c: r.get(c, "") for c in cols})
    return path
