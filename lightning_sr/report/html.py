"""``report.html``: the sweep on one self-contained page (no network: the plots and sample crops are inline
``data:`` URIs, the sorting script is inline).

* the table of ``report.md`` (same columns, same number formats); a click on a header sorts by that column
  (numbers numerically, again: descending); published rows are marked (``class="published"``, a green band and
  a *published* tag), the bicubic baseline greyed; one ``<tr class="measured" data-job=...>`` per job;
* the Pareto plots (``psnr_vs_params.png``, ``psnr_vs_macs.png``) inlined;
* per job an LR | SR | HR crop of its latest validation sample (``<job>/samples/<tag>/step*.png``, the panel the
  module logs: nearest-upscaled LR | SR | HR side by side): the same square from each third, at most
  :data:`CROP` px wide each.
"""

from __future__ import annotations

import base64
import html
import time
from pathlib import Path
from typing import Any

import numpy as np

from lightning_sr.fs import atomic_write
from lightning_sr.ops.image_io import read_rgb
from lightning_sr.report.collect import BICUBIC, PUBLISHED, SweepReport
from lightning_sr.report.markdown import TEXT_COLS, cell_text, header, how_to_read, md_columns

CROP = 128  # side of each of the LR | SR | HR crops, px

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3;cursor:pointer;user-select:none;position:sticky;top:0}th.asc:after{content:" \\25B2"}
th.desc:after{content:" \\25BC"}td.t{text-align:left}tr.published td{background:#eaf6ea}
tr.bicubic td{color:#777}.tag{background:#2a7d2a;color:#fff;border-radius:3px;padding:0 4px;font-size:11px}
tr.failed td,tr.unfinished td{background:#fbeaea}.plots img{max-width:48%;margin-right:1%}
td.sig{font-weight:bold}.warning{background:#fff3cd;padding:4px 8px}
.crops{display:flex;flex-wrap:wrap;gap:16px}.crop figure{margin:0}.crop figcaption{font-size:12px}
"""

SCRIPT = """
document.querySelectorAll('#report th').forEach((th, col) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0], rows = [...body.rows];
  const dir = th.classList.contains('asc') ? -1 : 1;
  th.closest('tr').querySelectorAll('th').forEach(h => h.classList.remove('asc', 'desc'));
  th.classList.add(dir > 0 ? 'asc' : 'desc');
  const key = r => { const c = r.cells[col], v = c.dataset.v ?? c.textContent.trim(), n = parseFloat(v);
                     return v === '' ? null : (isNaN(n) ? v : n); };
  rows.sort((a, b) => { const x = key(a), y = key(b);
    if (x === null) return 1; if (y === null) return -1;
    return (typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y))) * dir; });
  rows.forEach(r => body.appendChild(r));
}));
"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def encode_png(rgb: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise ValueError("cannot encode PNG")
    return buf.tobytes()


def latest_sample(job_dir: Path) -> Path | None:
    """The newest sample panel of a job (highest step; the main output's tag first)."""
    files = sorted((job_dir / "samples").glob("*/step*.png"), key=lambda p: (p.stem, p.parent.name.startswith("_")))
    files = [f for f in files if f.stem == files[-1].stem] if files else []
    return sorted(files, key=lambda p: (p.parent.name.startswith("_"), p.parent.name))[0] if files else None


def sample_crop(panel: Path, size: int = CROP) -> np.ndarray | None:
    """LR | SR | HR: the same centred square from each third of the panel, side by side."""
    try:
        img = read_rgb(panel)
    except Exception:
        return None
    h, w3 = img.shape[0], img.shape[1] // 3
    s = min(size, h, w3)
    top, left = (h - s) // 2, (w3 - s) // 2
    return np.concatenate([img[top:top + s, k * w3 + left:k * w3 + left + s] for k in range(3)], axis=1)


def _cell(col: str, row: dict[str, Any], rep: SweepReport) -> str:
    v = row.get(col, "")
    if col in rep.keys or col in TEXT_COLS or col == "reproduced":
        shown = html.escape(cell_text(col, row, rep))
        if col == "source" and v == PUBLISHED:
            shown = '<span class="tag">published</span>'
        return f'<td class="t">{shown}</td>'
    raw = "" if v in (None, "") else str(v)
    sig = ' class="sig"' if col.split("/")[-1].startswith("delta_") and row.get(f"{col}_sig") else ""
    return f'<td data-v="{html.escape(raw)}"{sig}>{html.escape(cell_text(col, row, rep))}</td>'


def write_html(rep: SweepReport, path: Path, plots: dict[str, Path]) -> Path:
    cols = md_columns(rep)
    title = f"Sweep report: {rep.name or rep.sweep_dir.name}"
    counts = ", ".join(f"{n} {s}" for s, n in sorted(rep.counts().items()))
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{html.escape(title)}</title>",
           f"<style>{STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
           f"<p>Folder <code>{html.escape(str(rep.sweep_dir))}</code>, {len(rep.jobs)} jobs: {html.escape(counts)}. "
           f"Written {time.strftime('%Y-%m-%d %H:%M')}.</p>"]
    if rep.command:
        out.append(f"<p>Command: <code>python train.py -m {html.escape(' '.join(rep.command))}</code></p>")
    if rep.published is not None:
        out.append(f'<p><span class="tag">published</span> rows: {html.escape(rep.published.source)} '
                   f"(the paper's numbers, not measured here).</p>")
    out += [f'<p class="warning"><b>Warning:</b> {html.escape(w)}</p>' for w in rep.warnings]
    out += [f"<p>Note: {html.escape(n)}</p>" for n in rep.notes]
    out.append('<p>Click a column header to sort.</p><table id="report"><thead><tr>'
               + "".join(f"<th>{html.escape(header(c, rep))}</th>" for c in cols) + "</tr></thead><tbody>")
    for r in rep.rows:
        src = r.get("source")
        cls = "published" if src == PUBLISHED else "bicubic" if src == BICUBIC else f"measured {r.get('status', '')}"
        job = f' data-job="{html.escape(str(r.get("job", "")))}"' if src not in (PUBLISHED, BICUBIC) else ""
        out.append(f'<tr class="{cls}"{job}>' + "".join(_cell(c, r, rep) for c in cols) + "</tr>")
    out.append("</tbody></table>")
    out += [f"<p><i>{html.escape(x.strip('_'))}</i></p>" for x in how_to_read(rep) if x]
    if plots:
        out.append('<h2>Plots</h2><div class="plots">')
        for key, p in plots.items():
            out.append(f'<img alt="PSNR vs {html.escape(key)}" src="{data_uri(Path(p).read_bytes())}">')
        out.append("</div><p>Filled circles: measured; the line marks the Pareto front (no other run is both "
                   "cheaper and better); hollow squares: published numbers.</p>")
    out.append(f'<h2>Samples (LR | SR | HR, {CROP} px crops of the latest validation panel)</h2><div class="crops">')
    for j in rep.jobs:
        panel = latest_sample(j.dir)
        crop = sample_crop(panel) if panel is not None else None
        label = html.escape(f"job {j.name}: {' '.join(j.overrides)}")
        if crop is None:
            out.append(f'<div class="crop" data-job="{html.escape(j.name)}"><p>{label}: no samples</p></div>')
            continue
        out.append(f'<div class="crop" data-job="{html.escape(j.name)}"><figure><img alt="LR | SR | HR, job '
                   f'{html.escape(j.name)}" src="{data_uri(encode_png(crop))}"><figcaption>{label} '
                   f"({html.escape(panel.parent.name)}/{html.escape(panel.name)})</figcaption></figure></div>")
    out += ["</div>", f"<script>{SCRIPT}</script>", "</body></html>"]
    atomic_write(path, "\n".join(out) + "\n")
    return path


__all__ = ["data_uri", "latest_sample", "sample_crop", "write_html"]
