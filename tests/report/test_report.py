"""Sweep report (lightning_sr.report): synthetic multirun folders (finished, failed, unfinished jobs,
published rows per set and per exit) and, marked slow, the acceptance run: a real 2-job smoke sweep with
W&B offline followed by the report."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lightning_sr.report import collect, main, pareto_front, plot_points
from lightning_sr.report.published import load_published
from lightning_sr.report.results_doc import compact_table, read_latency
from tests.conftest import ROOT, SMOKE, run_cli

PNG = b"\x89PNG\r\n\x1a\n"


def _cost(params: int, macs: int) -> dict:
    return {"params": params, "params_trainable": params, "macs": macs, "macs_input": "3x128x128",
            "size_mb": params * 4 / 2**20, "latency_ms": 12.5, "latency_threads": 2}


def _metrics(sets: dict, params: int, macs: int, **extra) -> dict:
    main = {m: sum(v[m] for v in sets.values()) / len(sets) for m in ("psnr", "ssim")}
    return {"status": "finished", **main, "sets": sets, "cost": _cost(params, macs), "params": params,
            "bicubic": {s: {"psnr": 20.0, "ssim": 0.5, "images": 2} for s in sets}, "train_time_s": 3725.0,
            "global_step": 100, **extra}


def make_job(sweep: Path, num: int, overrides: list[str], config: dict, metrics: dict | None) -> Path:
    d = sweep / str(num)
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    if metrics is not None:
        (d / "metrics.json").write_text(json.dumps(metrics))
    return d


def make_multirun(sweep: Path, task: list[str], name: str) -> None:
    sweep.mkdir(parents=True, exist_ok=True)
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"name": name, "hydra": {"overrides": {"task": task}}}))


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture
def srgan_sweep(tmp_path) -> Path:
    """Three jobs of the SRGAN layer-pruning sweep: 16 finished, 12 failed, 8 unfinished."""
    sweep = tmp_path / "multiruns" / "2024-01-01_00-00-00"
    make_multirun(sweep, ["experiment=srgan_layer_pruning", "model.res_blocks=16,12,8"], "srgan_layer_pruning")
    cfg = lambda b: {"name": "srgan_layer_pruning", "published": "srgan_layer_pruning",  # noqa: E731
                     "model": {"res_blocks": b, "name": f"srgan{b}"}}
    make_job(sweep, 0, ["experiment=srgan_layer_pruning", "model.res_blocks=16"], cfg(16),
             _metrics({"DIV2K_valid": {"psnr": 26.5, "ssim": 0.71}}, 1549462, 26_000_000_000))
    make_job(sweep, 1, ["experiment=srgan_layer_pruning", "model.res_blocks=12"], cfg(12),
             {"status": "failed", "error": "DataError: DIV2K_valid_HR is empty\nTraceback ...", "overrides": []})
    make_job(sweep, 2, ["experiment=srgan_layer_pruning", "model.res_blocks=8"], cfg(8), None)
    (sweep / "2" / "checkpoints").mkdir()
    return sweep


def test_report_lists_every_job_and_the_published_table(srgan_sweep, capsys):
    assert main([str(srgan_sweep)]) == 0
    out = capsys.readouterr().out
    for f in ("report.md", "report.csv", "psnr_vs_params.png", "psnr_vs_macs.png"):
        assert str(srgan_sweep / f) in out  # tells where the files are
        assert (srgan_sweep / f).stat().st_size > 0
    rows = read_csv(srgan_sweep / "report.csv")
    measured = [r for r in rows if r["source"] == "measured"]
    assert [(r["model.res_blocks"], r["status"]) for r in measured] == [("16", "finished"), ("12", "failed"),
                                                                          ("8", "unfinished")]
    assert float(measured[0]["params"]) == 1549462 and float(measured[0]["DIV2K_valid/psnr"]) == 26.5
    assert measured[0]["macs"] == "26000000000" and float(measured[0]["train_time_s"]) == 3725.0
    assert "DIV2K_valid_HR is empty" in measured[1]["error"] and "Traceback" not in measured[1]["error"]
    assert measured[1]["DIV2K_valid/psnr"] == "" and measured[2]["params"] == ""
    assert "no metrics.json" in measured[2]["error"]

    published = [r for r in rows if r["source"] == "published"]
    assert len(published) == 5
    by_blocks = {r["model.res_blocks"]: r for r in published}
    assert by_blocks["16"]["params"] == "1543074" and by_blocks["16"]["DIV2K_valid/psnr"] == "25.28"
    assert by_blocks["2"]["DIV2K_valid/ssim"] == "0.5187" and by_blocks["2"]["status"] == "not run in this sweep"
    assert all(r["published_source"] == "000_26588d7da2163c91.txt" for r in published)
    # each published row follows the job it reproduces; measured values never leak into it
    order = [(r["source"], r["model.res_blocks"]) for r in rows]
    assert order.index(("published", "16")) == order.index(("measured", "16")) + 1
    assert order.index(("published", "12")) == order.index(("measured", "12")) + 1
    assert by_blocks["16"]["DIV2K_valid/psnr"] != measured[0]["DIV2K_valid/psnr"]
    assert by_blocks["16"]["job"] == "0" and by_blocks["4"]["job"] == ""
    bic = [r for r in rows if r["source"] == "bicubic"]
    assert len(bic) == 1 and float(bic[0]["DIV2K_valid/psnr"]) == 20.0

    md = (srgan_sweep / "report.md").read_text()
    assert "**published**" in md and "000_26588d7da2163c91.txt" in md
    assert "| 16 | 0 | measured | finished | 1,549,462 |" in md
    assert "failed" in md and "unfinished" in md and "DIV2K_valid_HR is empty" in md
    assert "![PSNR vs params](psnr_vs_params.png)" in md
    assert "62.1 min" in md  # training time
    for f in ("psnr_vs_params.png", "psnr_vs_macs.png"):
        assert (srgan_sweep / f).read_bytes()[:8] == PNG


def test_published_points_are_plotted_only_on_the_same_sets(srgan_sweep, tmp_path):
    rep = collect(srgan_sweep)
    pts = plot_points(rep)
    assert {p["kind"] for p in pts} == {"measured", "published"}
    assert [p["psnr"] for p in pts if p["kind"] == "measured"] == [26.5]  # failed/unfinished jobs: no point
    # the same sweep measured on other images (a smoke run): published DIV2K numbers are not plotted
    other = tmp_path / "smoke"
    make_multirun(other, ["model.res_blocks=16"], "x")
    make_job(other, 0, ["model.res_blocks=16"], {"published": "srgan_layer_pruning", "model": {"res_blocks": 16}},
             _metrics({"embedded": {"psnr": 30.0, "ssim": 0.8}}, 1549462, 10**9))
    rep = collect(other)
    assert {p["kind"] for p in plot_points(rep)} == {"measured"}
    assert main([str(other)]) == 0
    assert "not comparable" in (other / "report.md").read_text()


def test_per_set_and_per_exit_published_rows(tmp_path):
    """Self-distillation style: multi-exit jobs, published rows keyed by {model.res_blocks, exit}, per set."""
    table = tmp_path / "sd.yaml"
    sets5 = {"Set5": {"psnr": 28.758, "ssim": 0.879}, "Set14": {"psnr": 25.9, "ssim": 0.71}}
    table.write_text(yaml.safe_dump({
        "title": "self-distillation", "source": "002_151403904a4a0b00.txt",
        "eval_sets": ["Set5", "Set14"],
        "rows": [{"match": {"model.res_blocks": 32, "exit": "exit8"}, "label": "SRResNet-8 from 32", "sets": sets5},
                 {"match": {"model.res_blocks": 32, "exit": "exit32"}, "label": "SRResNet-32",
                  "sets": {"Set5": {"psnr": 30.1, "ssim": 0.9}}},
                 {"match": {"model.res_blocks": 50, "exit": "exit8"}, "sets": {"Set5": {"psnr": 28.8}}}],
    }))
    sweep = tmp_path / "sd_sweep"
    make_multirun(sweep, ["model=multi_exit", "model.res_blocks=32,50"], "sd")
    for i, blocks in enumerate((32, 50)):
        sets = {"Set5": {"psnr": 30.0 + i, "ssim": 0.9}, "Set14": {"psnr": 27.0 + i, "ssim": 0.8}}
        exits = {s: {"exit8": {"psnr": v["psnr"] - 1.5, "ssim": 0.85}} for s, v in sets.items()}
        exit_cost = {"exit8": _cost(400_000 + i, 10**9), f"exit{blocks}": _cost(2_000_000 + i, 5 * 10**9)}
        make_job(sweep, i, ["model=multi_exit", f"model.res_blocks={blocks}"], {"model": {"res_blocks": blocks}},
                 _metrics(sets, 2_000_000 + i, 5 * 10**9, exits=exits, exit_cost=exit_cost))
    assert main([str(sweep), "--published", str(table)]) == 0
    rows = read_csv(sweep / "report.csv")
    meas = [r for r in rows if r["source"] == "measured"]
    assert float(meas[0]["Set5/exit8/psnr"]) == 28.5 and float(meas[1]["Set14/exit8/psnr"]) == 26.5
    assert float(meas[0]["exit8/params"]) == 400_000 and float(meas[0]["Set5/psnr"]) == 30.0
    pub = {(r["model.res_blocks"], r["exit"]): r for r in rows if r["source"] == "published"}
    assert float(pub[("32", "exit8")]["Set5/exit8/psnr"]) == 28.758
    assert float(pub[("32", "exit8")]["Set14/exit8/ssim"]) == 0.71
    assert pub[("32", "exit8")]["Set5/psnr"] == ""  # an exit's numbers never land in the main columns
    assert float(pub[("32", "exit32")]["Set5/psnr"]) == 30.1  # the deepest exit is the job's main output
    assert pub[("50", "exit8")]["job"] == "1"
    md = (sweep / "report.md").read_text()
    assert "Set5 exit8 PSNR" in md and "exit8 params" in md
    pts = plot_points(collect(sweep, str(table)))
    labels = {p["label"] for p in pts if p["kind"] == "measured"}
    assert labels == {"res_blocks=32", "res_blocks=32:exit8", "res_blocks=50", "res_blocks=50:exit8"}
    exit_pt = next(p for p in pts if p["label"] == "res_blocks=32:exit8")
    assert exit_pt["params"] == 400_000 and exit_pt["psnr"] == pytest.approx(27.0)  # mean of 28.5 and 25.5


def test_mapping_form_and_real_table():
    t = load_published("srgan_layer_pruning")
    assert [r.match["model.res_blocks"] for r in t.rows] == [16, 12, 8, 4, 2]
    assert [r.values["params"] for r in t.rows] == [1543074, 1238943, 934827, 630711, 478653]
    assert [r.values["DIV2K_valid/psnr"] for r in t.rows] == [25.28, 25.88, 26.06, 24.62, 24.33]
    assert [r.values["DIV2K_valid/ssim"] for r in t.rows] == [0.6446, 0.7043, 0.7076, 0.5651, 0.5187]


def test_mapping_rows(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump({"eval_set": "S", "rows": {"model.res_blocks=4,exit=exit2": {"psnr": 1.5},
                                                            "model.res_blocks=8": {"psnr": 2.5, "params": 9}}}))
    t = load_published(str(p))
    assert t.rows[0].match == {"model.res_blocks": 4} and t.rows[0].exit == "exit2"
    assert t.rows[0].values == {"S/exit2/psnr": 1.5}
    assert t.rows[1].values == {"params": 9, "S/psnr": 2.5}


def test_missing_published_table_is_a_note_unless_asked_for(tmp_path, capsys):
    sweep = tmp_path / "s"
    make_multirun(sweep, ["model.res_blocks=4"], "s")
    make_job(sweep, 0, ["model.res_blocks=4"], {"published": "no_such_table", "model": {"res_blocks": 4}},
             _metrics({"Set5": {"psnr": 30.0, "ssim": 0.9}}, 10, 20))
    assert main([str(sweep)]) == 0
    assert "no_such_table" in (sweep / "report.md").read_text()
    assert [r["source"] for r in read_csv(sweep / "report.csv")] == ["measured", "bicubic"]
    assert main([str(sweep), "--published", "no_such_table"]) == 2
    assert "error: published table 'no_such_table' not found" in capsys.readouterr().err


def test_pareto_front():
    pts = [(1, 10.0), (2, 12.0), (3, 11.0), (4, 13.0), (4, 12.5), (0.5, 9.0)]
    assert pareto_front(pts) == [5, 0, 1, 3]
    assert pareto_front([(1, 1.0), (1, 1.0)]) == [0, 1]


def test_report_errors_are_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)


@pytest.mark.slow
def test_acceptance_smoke_sweep_wandb_report(tmp_path):
    """python train.py -m model.res_blocks=1,2 <smoke> logger=wandb, then the report: a 2-row table,
    two PNG plots and two offline W&B runs (one group, named by their overrides, summary = cost + metrics).
    Then the same command again after job 1 was 'pre-empted': job 0 is skipped, job 1 runs again."""
    from lightning_sr.config import generator_spec
    from lightning_sr.cost import count_params
    from lightning_sr.networks import build_generator
    from tests.conftest import compose
    from tests.wandb_store import offline_runs

    sweep = tmp_path / "sweep"
    args = ["-m", "model.res_blocks=1,2", *[a for a in SMOKE if not a.startswith(("model.res_blocks", "logger"))],
            "logger=wandb", f"hydra.sweep.dir={sweep}"]
    run_cli("train.py", args, env={"WANDB_MODE": "offline"})
    for f in ("report.md", "report.csv"):  # the multirun wrote its report; the command below rewrites it
        assert (sweep / f).is_file()
        (sweep / f).unlink()
    out = subprocess.run([sys.executable, "-m", "lightning_sr.report", str(sweep)], capture_output=True, text=True,
                         check=True, timeout=300, cwd=ROOT).stdout
    assert str(sweep / "report.md") in out
    rows = read_csv(sweep / "report.csv")
    measured = [r for r in rows if r["source"] == "measured"]
    assert [(r["model.res_blocks"], r["status"]) for r in measured] == [("1", "finished"), ("2", "finished")]
    for r in measured:  # cost columns are the shared model_cost of the trained generator
        spec = generator_spec(compose([f"model.res_blocks={r['model.res_blocks']}", "model.channels=8"]))
        assert int(r["params"]) == count_params(build_generator(spec))
        assert int(r["macs"]) > 0 and float(r["latency_ms"]) > 0 and float(r["embedded/psnr"]) > 10
    md = (sweep / "report.md").read_text()
    assert md.count("| measured | finished |") == 2
    # the rows timed side by side: a plain multirun (no job names, no reference) gets one latency line per report
    # row, under the label the results table gives that row
    subprocess.run([sys.executable, "-m", "lightning_sr.report.latency", str(sweep), "--rounds", "2"],
                   capture_output=True, text=True, check=True, timeout=300, cwd=ROOT)
    side = read_latency(sweep)
    assert sorted(side) == sorted(r["job"] for r in measured) and all(float(v["latency_ms"]) > 0 for v in side.values())
    table = compact_table(sweep / "report.csv")
    assert "CPU latency vs reference" in table and all(f"{float(v['latency_ms']):.1f} ms" in table for v in side.values())
    for f in ("psnr_vs_params.png", "psnr_vs_macs.png"):
        assert (sweep / f).read_bytes()[:8] == PNG

    runs = offline_runs(sweep)
    assert len(runs) == 2 and runs[0].id != runs[1].id
    assert [str(r.dir.relative_to(sweep)).split("/")[0] for r in runs] == ["0", "1"]
    assert len({r.group for r in runs}) == 1 and runs[0].group.endswith(sweep.name)
    assert [r.name for r in runs] == ["model.res_blocks=1", "model.res_blocks=2"]
    for r, m in zip(runs, measured, strict=True):
        assert r.finished and r.exit_code == 0
        assert r.summary["cost/params"] == int(m["params"])
        assert r.summary["final/embedded/psnr"] == pytest.approx(float(m["embedded/psnr"]))
        assert r.summary["val/psnr"]["max"] >= r.summary["final/psnr"] - 1e-4
        assert "srresnet" in r.tags and "profile:smoke" in r.tags
        assert r.config["model"]["res_blocks"] == int(m["model.res_blocks"])
        assert list((r.dir / "files" / "media" / "images").rglob("*.png"))  # LR | SR | HR samples
    for d, blocks in ((sweep / "0", 1), (sweep / "1", 2)):  # one job folder per value, each its resolved config
        assert json.loads((d / "metrics.json").read_text())["generator"]["res_blocks"] == blocks
        assert (d / ".hydra" / "config.yaml").is_file()

    # a resumed sweep skips finished jobs
    done = sweep / "0" / "metrics.json"
    before = done.stat().st_mtime_ns
    (sweep / "1" / "metrics.json").unlink()  # job 1 'was pre-empted'
    (sweep / "1" / "checkpoints" / "last.ckpt").unlink()
    p = run_cli("train.py", args, env={"WANDB_MODE": "offline"})
    assert "already finished" in p.stdout + p.stderr
    assert done.stat().st_mtime_ns == before  # job 0 untouched
    assert json.loads((sweep / "1" / "metrics.json").read_text())["status"] == "finished"


# ----- report.html -------------------------------------------------------------------------------------------------
def _sweep_with_samples(srgan_sweep: Path) -> Path:
    """Job 0 gets two sample panels (LR | SR | HR): the page must show the newer one."""
    import numpy as np

    from lightning_sr.ops.image_io import write_rgb

    for step, value in ((2, 10), (4, 200)):
        panel = np.full((40, 120, 3), value, np.uint8)
        panel[:, 40:80] = (0, value, 0)  # the SR third is green
        write_rgb(srgan_sweep / "0" / "samples" / "val" / f"step{step:07d}.png", panel)
    return srgan_sweep


def _parse_report(path: Path) -> dict:
    from html.parser import HTMLParser

    found: dict = {"rows": [], "imgs": [], "links": []}

    class P(HTMLParser):
        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "tr" and a.get("class", "").split()[:1] in (["measured"], ["published"], ["bicubic"]):
                found["rows"].append((a["class"].split()[0], a.get("data-job")))
            if tag == "img":
                found["imgs"].append(a["src"])
            if tag in ("link", "script") and (a.get("href") or a.get("src")):
                found["links"].append(a.get("href") or a.get("src"))

    P().feed(path.read_text())
    return found


def test_report_html_is_one_self_contained_page(srgan_sweep):
    """One measured row per job, published rows marked, every image an inline PNG that decodes, nothing fetched;
    the sample crop is LR | SR | HR of the newest panel."""
    import base64

    import cv2
    import numpy as np

    sweep = _sweep_with_samples(srgan_sweep)
    assert main([str(sweep)]) == 0
    page = _parse_report(sweep / "report.html")
    assert [j for kind, j in page["rows"] if kind == "measured"] == ["0", "1", "2"]
    assert any(kind == "published" for kind, _ in page["rows"])
    assert page["links"] == []
    assert len(page["imgs"]) == 4  # three plots (params, MACs, size) + job 0's crop (jobs 1, 2: "no samples")
    decoded = []
    for src in page["imgs"]:
        assert src.startswith("data:image/png;base64,")
        img = cv2.imdecode(np.frombuffer(base64.b64decode(src.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.size > 0
        decoded.append(img[..., ::-1])
    crop = decoded[-1]
    assert crop.shape == (40, 120, 3)
    assert (crop[:, :40] == 200).all() and (crop[:, 40:80] == (0, 200, 0)).all()  # newest panel, thirds kept


CHROMIUM = next((c for c in ("chromium", "chromium-browser", "google-chrome") if __import__("shutil").which(c)), None)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed: run `make browser` (apt-get install "
                                              "chromium) to render report.html in a browser")
def test_report_html_renders_in_headless_chromium(srgan_sweep, tmp_path):
    """As a person reads it: Chromium renders the page (screenshot not blank); in its DOM, after the page's own
    script ran, the table has one measured row per job and every image decoded (naturalWidth > 0). A probe script
    is appended to a copy of the page; a click on the PSNR header sorts the rows."""
    import cv2

    sweep = _sweep_with_samples(srgan_sweep)
    assert main([str(sweep)]) == 0
    page = sweep / "report.html"
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => i.complete ? i.naturalWidth : -1);
  const jobs = [...document.querySelectorAll('#report tbody tr.measured')].map(r => r.dataset.job);
  const ths = [...document.querySelectorAll('#report th')], col = ths.findIndex(h => h.textContent.trim().endsWith('PSNR'));
  const psnr = () => [...document.querySelectorAll('#report tbody tr')].map(r => r.cells[col].dataset.v)
                                                                      .filter(v => v).map(Number);
  const before = psnr();
  ths[col].click(); ths[col].click();
  document.body.setAttribute('data-probe', JSON.stringify({imgs, jobs, before, after: psnr()}));
});
</script></body>"""))
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,900", page.as_uri()], capture_output=True,
                   timeout=120, check=False)
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (900, 1280) and img.std() > 5, "blank or missing screenshot"
    dom = subprocess.run([*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120,
                         check=False).stdout
    import html as _html
    import re

    m = re.search(r'data-probe="([^"]*)"', dom)
    assert m, dom[-2000:]
    probe_out = json.loads(_html.unescape(m.group(1)))
    assert probe_out["jobs"] == ["0", "1", "2"]
    assert len(probe_out["imgs"]) == 4 and all(w > 0 for w in probe_out["imgs"]), probe_out
    before, after = probe_out["before"], probe_out["after"]  # two clicks on PSNR: descending
    assert sorted(before, reverse=True) == after and before != after, probe_out


def test_budget_of_a_checkpoint_is_what_its_run_had_trained_when_it_was_written(tmp_path):
    """A job started from, or an evaluation of, an earlier checkpoint of a run (best-*.ckpt) is charged the steps
    that checkpoint had reached (images in proportion), not the run's final steps; last.ckpt and the artefacts
    written from the final model (int8.pt2) are charged the whole run; an exported exit, the checkpoint it came
    from; chains add up."""
    import torch

    from lightning_sr.report.compare import eval_budget, init_budget
    from lightning_sr.report.jobs import load_job

    teacher = make_job(tmp_path, 0, [], {}, {"status": "finished", "global_step": 100, "images_seen": 1600})
    (teacher / "checkpoints").mkdir()
    torch.save({"global_step": 40, "state_dict": {}}, teacher / "checkpoints" / "best-step0000040.ckpt")
    torch.save({"global_step": 100, "state_dict": {}}, teacher / "checkpoints" / "last.ckpt")
    best, last = teacher / "checkpoints" / "best-step0000040.ckpt", teacher / "checkpoints" / "last.ckpt"
    student = make_job(tmp_path, 1, [], {"model": {"init_from": str(best)}},
                       {"status": "finished", "global_step": 50, "images_seen": 800})
    assert init_budget(load_job(student)) == (40, 640)
    for num, ckpt, budget in ((2, best, (40, 640)), (3, last, (100, 1600)), (4, teacher / "checkpoints" / "int8.pt2",
                                                                            (100, 1600))):
        ev = make_job(tmp_path, num, [], {}, {"status": "finished", "ckpt_path": str(ckpt)})
        assert eval_budget(load_job(ev)) == budget, ckpt.name
    exported = tmp_path / "elsewhere" / "best-step0000040_exit8.ckpt"  # lightning_sr.export: no global_step of its own
    exported.parent.mkdir()
    torch.save({"state_dict": {}, "lsr_export": {"source": str(best), "exit": "exit8"}}, exported)
    ev = make_job(tmp_path, 6, [], {}, {"status": "finished", "ckpt_path": str(exported)})
    assert eval_budget(load_job(ev)) == (40, 640)
    (student / "checkpoints").mkdir()  # a chain: an evaluation of the student's last.ckpt counts its start too
    ev = make_job(tmp_path, 5, [], {}, {"status": "finished", "ckpt_path": str(student / "checkpoints" / "last.ckpt")})
    assert eval_budget(load_job(ev)) == (90, 1440)
