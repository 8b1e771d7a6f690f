"""Seeds and statistics in the sweep report (issue 21 part 3, issue 18 item 9): lightning_sr.report.stats against
hand-computable cases and independent computations; a real ``-m seed=0,1,2 model.res_blocks=1,2`` smoke sweep
whose report has mean ± std and n, the paired delta with its bootstrap interval, the reproduced column, the budget
columns and the machine of every latency; manifest.json in every job folder; LapSRN's published x4 table."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from lightning_sr.report import collect, main
from lightning_sr.report.published import load_published, tables_for_data
from lightning_sr.report.stats import (
    Bootstrap,
    mean_std,
    paired_bootstrap,
    paired_differences,
    read_per_image,
)
from tests.conftest import SMOKE, run_cli


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


# ----- stats: hand-computable and independent checks ---------------------------------------------------------------
def test_mean_std_is_numpy_sample_std():
    xs = [27.1, 27.4, 26.9, 27.0]
    m, sd, n = mean_std(xs)
    assert n == 4 and m == pytest.approx(np.mean(xs)) and sd == pytest.approx(np.std(xs, ddof=1))
    assert mean_std([5.0]) == (5.0, 0.0, 1) and mean_std([])[2] == 0


def test_bootstrap_hand_computable():
    # two images, differences 0 and 1: resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4
    m, lo, hi = paired_bootstrap(np.array([0.0, 1.0]), resamples=4000, seed=3)
    assert (m, lo, hi) == (0.5, 0.0, 1.0)
    m, lo, hi = paired_bootstrap(np.full((5, 3), 0.25))  # a constant difference: no spread
    assert m == lo == hi == pytest.approx(0.25)
    m, lo, hi = paired_bootstrap(np.array([-2.0, -1.0, 1.0, 2.0]))  # zero difference: the interval holds 0
    assert m == 0.0 and lo < 0 < hi


def test_one_pair_has_no_interval():
    """One image of one seed: the resampled means are all that one difference, which is no evidence; the interval
    is undefined and never excludes 0 (it did: lo == hi == the difference)."""
    m, lo, hi = paired_bootstrap(np.array([0.25]))
    assert m == 0.25 and math.isnan(lo) and math.isnan(hi)
    assert not Bootstrap(m, lo, hi, 1, 1, True).excludes_zero
    assert paired_bootstrap(np.array([0.25, 0.5]))[1] == pytest.approx(0.25)  # two pairs: an interval again


def test_bootstrap_matches_a_t_interval_on_a_large_sample():
    rng = np.random.default_rng(7)
    d = rng.normal(0.05, 0.5, size=4000)  # known mean difference 0.05 dB
    m, lo, hi = paired_bootstrap(d, resamples=4000)
    half = 1.96 * d.std(ddof=1) / math.sqrt(d.size)
    assert lo < 0.05 < hi
    assert lo == pytest.approx(d.mean() - half, abs=0.2 * half) and hi == pytest.approx(d.mean() + half, abs=0.2 * half)
    # images x seeds: a seed offset shared by both rows cancels in the pairs, so it cannot widen the interval
    grid = rng.normal(0.05, 0.5, size=(1000, 3))
    m2, lo2, hi2 = paired_bootstrap(grid, resamples=2000)
    assert lo2 < 0.05 < hi2 and m2 == pytest.approx(grid.mean())


def test_pairing_same_seeds_by_image_and_seed_else_on_seed_means():
    def side(vals: dict[int, dict[str, float]]) -> dict:
        return {s: {"S": {i: {"psnr": v} for i, v in imgs.items()}} for s, imgs in vals.items()}

    row = side({0: {"a": 30.0, "b": 20.0}, 1: {"a": 32.0, "b": 22.0}})
    ref = side({0: {"a": 29.0, "b": 20.5}, 1: {"a": 31.0, "b": 21.0}})
    d, by_seed = paired_differences(row, ref, "S", "psnr")
    assert by_seed and d.tolist() == [[1.0, 1.0], [-0.5, 1.0]]
    other = side({5: {"a": 28.0, "b": 21.0, "c": 1.0}})  # other seeds (and an image the row lacks)
    d, by_seed = paired_differences(row, other, "S", "psnr")
    assert not by_seed and d.tolist() == [31.0 - 28.0, 21.0 - 21.0]


# ----- the real seed sweep --------------------------------------------------------------------------------------
TABLE = {"title": "test table", "source": "test", "eval_set": "embedded", "tolerance_db": 1.0,
         "protocol": {"data": "t91", "iterations": 1000, "degradation": "bicubic"},
         "rows": [{"match": {"model.res_blocks": 1}, "label": "ours-1", "psnr": 27.0}]}



def test_video_jobs_pair_per_clip_means_of_per_frame_csv(tmp_path):
    """A video job writes per_frame.csv (images clip/frame): its paired unit is the clip, each metric averaged over
    the clip's frames that have it (tOF/tLP start at the second frame); per_image.csv wins when both exist."""
    rows = [("v", "", "a/0000", 30, 0.9, ""), ("v", "", "a/0001", 32, 0.8, 1.5), ("v", "", "b/0000", 20, 0.5, ""),
            ("v", "x8", "a/0000", 99, 0.1, "")]  # another exit: not the main output
    with open(tmp_path / "per_frame.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["set", "exit", "image", "psnr", "ssim", "tof"])
        w.writerows(rows)
    assert read_per_image(tmp_path) == {"v": {"a": {"psnr": 31.0, "ssim": pytest.approx(0.85), "tof": 1.5},
                                              "b": {"psnr": 20.0, "ssim": 0.5}}}
    (tmp_path / "per_image.csv").write_text("set,exit,image,psnr\nv,,a,10\n")
    assert read_per_image(tmp_path) == {"v": {"a": {"psnr": 10.0}}}


def test_reference_is_named_by_the_keys_given_not_every_key_that_differs():
    """Evaluation jobs differ by checkpoint path too: the reference named name=gs_teacher is shown as that, not as
    ckpt_path=/a/long/path,name=gs_teacher in every delta column; a value alone or an exact row name: the row's."""
    from lightning_sr.report.compare import Unit, find_reference, reference_label

    units = [Unit((("ckpt_path", f"/runs/{n}/last.ckpt"), ("name", n)), [], {}) for n in ("teacher", "student")]
    assert reference_label(find_reference(units, "name=teacher"), "name=teacher") == "name=teacher"
    assert reference_label(find_reference(units, "name:student"), "name:student") == "name=student"
    full = units[0].name
    assert reference_label(find_reference(units, full), full) == full

@pytest.fixture(scope="module")
def seed_sweep(tmp_path_factory) -> Path:
    sweep = tmp_path_factory.mktemp("seeds") / "sweep"
    smoke = [a for a in SMOKE if not a.startswith(("model.res_blocks", "trainer.max_steps", "trainer.val_check"))]
    run_cli("train.py", ["-m", "seed=0,1,2", "model.res_blocks=1,2", *smoke, "trainer.max_steps=2",
                         "trainer.val_check_interval=2", "report.reference=model.res_blocks:1",
                         f"hydra.sweep.dir={sweep}"])
    return sweep


def _jobs_by_blocks(sweep: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for d in sorted((p for p in sweep.iterdir() if (p / "metrics.json").is_file()), key=lambda p: int(p.name)):
        ov = yaml.safe_load((d / ".hydra" / "overrides.yaml").read_text())
        blocks = next(o.split("=")[1] for o in ov if o.startswith("model.res_blocks="))
        out.setdefault(blocks, []).append(d)
    return out


def _per_image(job: Path) -> dict[str, float]:
    return {r["image"]: float(r["psnr"]) for r in read_csv(job / "per_image.csv") if r["set"] == "embedded"
            and not r["exit"]}


def test_seed_sweep_report(seed_sweep, tmp_path):
    table = tmp_path / "table.yaml"
    table.write_text(yaml.safe_dump(TABLE))
    assert main([str(seed_sweep), "--published", str(table)]) == 0
    rows = read_csv(seed_sweep / "report.csv")
    meas = {r["model.res_blocks"]: r for r in rows if r["source"] == "measured"}
    assert sorted(meas) == ["1", "2"] and len([r for r in rows if r["source"] == "measured"]) == 2
    jobs = _jobs_by_blocks(seed_sweep)
    for blocks, r in meas.items():
        assert r["n"] == "3" and r["seed"] == "0,1,2"
        ms = [json.loads((d / "metrics.json").read_text()) for d in jobs[blocks]]
        for col, vals in (("embedded/psnr", [m["sets"]["embedded"]["psnr"] for m in ms]),
                          ("embedded/ssim", [m["sets"]["embedded"]["ssim"] for m in ms]),
                          ("latency_ms", [m["cost"]["latency_ms"] for m in ms]),
                          ("train_time_s", [m["train_time_s"] for m in ms])):
            assert float(r[col]) == pytest.approx(np.mean(vals), rel=1e-12), col
            assert float(r[col + "_std"]) == pytest.approx(np.std(vals, ddof=1), rel=1e-9, abs=1e-15), col
        batch = yaml.safe_load((jobs[blocks][0] / ".hydra" / "config.yaml").read_text())["data"]["batch_size"]
        assert r["global_step"] == "2" and int(r["images_seen"]) == ms[0]["batches"] * int(batch) > 0

    # paired delta of res_blocks=2 against the reference res_blocks=1 (report.reference of the jobs' config):
    # recomputed here from per_image.csv, pairs (image, seed), the same RNG stream, plain indexing
    ref, other = meas["1"], meas["2"]
    assert ref["embedded/delta_psnr"] == "reference"
    a = [_per_image(d) for d in jobs["2"]]
    b = [_per_image(d) for d in jobs["1"]]
    images = sorted(a[0])
    d = np.array([[a[s][i] - b[s][i] for s in range(3)] for i in images])
    rng = np.random.default_rng(0)
    ii = rng.integers(0, d.shape[0], size=(10_000, d.shape[0]))
    ss = rng.integers(0, 3, size=(10_000, 3))
    means = np.array([d[np.ix_(ii[k], ss[k])].mean() for k in range(10_000)])
    lo, hi = np.quantile(means, [0.025, 0.975])
    assert float(other["embedded/delta_psnr"]) == pytest.approx(d.mean(), abs=1e-12)
    assert float(other["embedded/delta_psnr_lo"]) == pytest.approx(lo, abs=1e-12)
    assert float(other["embedded/delta_psnr_hi"]) == pytest.approx(hi, abs=1e-12)
    assert other["embedded/delta_psnr_sig"] == ("*" if lo > 0 or hi < 0 else "")
    assert other["embedded/delta_psnr_pairs"] == f"{len(images)} images x 3 seeds"

    # reproduced? against the published row of res_blocks=1, with the protocol differences beside it
    assert float(ref["embedded/psnr_published"]) == 27.0
    assert float(ref["embedded/psnr_minus_published"]) == pytest.approx(float(ref["embedded/psnr"]) - 27.0)
    assert ref["reproduced"] == ("yes" if abs(float(ref["embedded/psnr"]) - 27.0) <= 1.0 else "no")
    assert "27.00" in ref["reproduced_detail"] and "tolerance 1 dB" in ref["reproduced_detail"]
    assert "training data embedded (paper: t91)" in ref["protocol_differences"]
    assert "2 iterations (paper: 1,000)" in ref["protocol_differences"]
    assert "degradation" not in ref["protocol_differences"]
    assert other.get("reproduced", "") == ""  # no published row for 2 blocks

    md = (seed_sweep / "report.md").read_text()
    title = md.splitlines()[0]
    assert title == "# Sweep report: seed=0,1,2 model.res_blocks=1,2", title  # what the sweep varies
    assert "srresnet" not in title
    assert "ΔPSNR vs model.res_blocks=1 (95% CI)" in md and " ± " in md and "reproduced?" in md
    assert f"{float(other['embedded/delta_psnr']):+.3f} [{lo:+.3f}, {hi:+.3f}]" in md
    assert "| steps | images seen | train time |" in md and "latency machine" in md
    assert "Warning" not in md  # equal budgets, one machine
    page = (seed_sweep / "report.html").read_text()
    assert "ΔPSNR vs model.res_blocks=1" in page and f"[{lo:+.3f}, {hi:+.3f}]" in page and "reproduced?" in page

    # every job folder has its manifest: environment lock, CPU model and flags, data checksums
    from lightning_sr.cost import cpu_name
    from lightning_sr.manifest import cpu_flags

    for d in (p for p in seed_sweep.iterdir() if (p / ".hydra").is_dir()):
        man = json.loads((d / "manifest.json").read_text())
        assert man["cpu"]["model"] == cpu_name() and man["cpu"]["flags"] == cpu_flags()
        assert man["cpu"]["flags"] or not Path("/proc/cpuinfo").is_file()  # x86: at least sse4_2
        assert isinstance(man["cpu"]["flags"], list) and man["packages"]["torch"].split("+")[0] in man["torch"]
        assert man["data"]["embedded"]["files"] == len(images) and len(man["data"]["embedded"]["sha256"]) == 64
        assert man["data"]["embedded"]["method"] == "content" and man["data"]["train"]["files"] > 0
    machine = json.loads((seed_sweep / "0" / "manifest.json").read_text())["machine"]
    assert ref["machine"] == machine and other["machine"] == machine


def test_bad_reference_is_one_line_listing_rows(seed_sweep, capsys):
    assert main([str(seed_sweep), "--reference", "model.res_blocks=7", "--no-plots"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.res_blocks=7" in err[0]
    assert "model.res_blocks=1, model.res_blocks=2" in err[0]
    rep = collect(seed_sweep, reference="2")  # the value alone names the row when one key (besides seed) is swept
    assert rep.reference == "model.res_blocks=2"


def test_budgets_and_machines_are_warned_about(seed_sweep, tmp_path):
    sweep = tmp_path / "copy"
    shutil.copytree(seed_sweep, sweep)
    m = json.loads((sweep / "1" / "metrics.json").read_text())
    m["global_step"], m["images_seen"] = 4, 2 * m["images_seen"]
    (sweep / "1" / "metrics.json").write_text(json.dumps(m))
    man = json.loads((sweep / "3" / "manifest.json").read_text())
    man["machine"] = "Other CPU 9000"
    (sweep / "3" / "manifest.json").write_text(json.dumps(man))
    assert main([str(sweep), "--no-plots"]) == 0
    md = (sweep / "report.md").read_text()
    warnings = [line for line in md.splitlines() if line.startswith("**Warning:**")]
    assert len(warnings) == 2
    assert "latencies not compared: the jobs ran on 2 machines" in warnings[0] and "Other CPU 9000" in warnings[0]
    assert "different training budgets" in warnings[1] and "model.res_blocks=2: 4 or 2 steps" in warnings[1]
    rows = [r for r in read_csv(sweep / "report.csv") if r["source"] == "measured"]
    assert all(r.get("latency_ms", "") == "" for r in rows)  # the refused comparison is not in the table either
    assert "CPU latency" not in md.split("| seed |")[1].splitlines()[0]


def test_budget_counts_the_checkpoint_a_job_started_from(seed_sweep, tmp_path):
    """A fine-tuned job (model.init_from) is charged its starting checkpoint's steps and images, recursively, so a
    pruned + fine-tuned model and one trained from scratch for the same total are equal budgets (issue 22)."""
    from omegaconf import OmegaConf

    jobs = _jobs_by_blocks(seed_sweep)
    sweep = tmp_path / "compared"
    teacher = tmp_path / "teacher"  # the chain's start lies outside the compared folder, as a real teacher does
    shutil.copytree(jobs["2"][0], teacher)
    student, scratch = sweep / "student", sweep / "scratch"
    shutil.copytree(jobs["1"][0], student)
    shutil.copytree(jobs["1"][1], scratch)
    for job in (student, scratch):  # as if given on the command line: student with init_from, scratch without
        cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
        cfg.report.reference = None
        if job is student:
            cfg.model.init_from = str(teacher / "checkpoints" / "last.ckpt")
            ov = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
            (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(ov + [f"model.init_from={cfg.model.init_from}"]))
        OmegaConf.save(cfg, job / ".hydra" / "config.yaml")
    m = {p: json.loads((p / "metrics.json").read_text()) for p in (teacher, student, scratch)}
    assert m[student]["global_step"] == m[scratch]["global_step"] == m[teacher]["global_step"] == 2

    rep = collect(sweep)
    rows = {r["job"]: r for r in rep.measured()}
    assert rows["student"]["steps_total"] == 4
    assert rows["student"]["images_total"] == m[student]["images_seen"] + m[teacher]["images_seen"]
    assert "steps_total" not in rows["scratch"]  # trained from scratch: nothing before it
    assert "different training budgets" in " ".join(rep.warnings)  # 2 steps from scratch vs 2 + 2

    # the scratch job trained the same total (4 steps, as many images): equal budgets, no warning
    (scratch / "metrics.json").write_text(json.dumps(
        m[scratch] | {"global_step": 4, "images_seen": m[student]["images_seen"] + m[teacher]["images_seen"]}))
    assert "different training budgets" not in " ".join(collect(sweep).warnings)

    # an evaluation job (evaluate.py: ckpt_path, no global_step) of the student's checkpoint stands for the
    # student's budget, its start included; the same of the scratch job for the scratch job's own
    for name, of in (("eval_student", student), ("eval_scratch", scratch)):
        ev = sweep / name
        shutil.copytree(of, ev)
        em = {k: v for k, v in m[of].items() if k not in ("global_step", "images_seen", "batches")}
        (ev / "metrics.json").write_text(json.dumps(em | {"ckpt_path": str(of / "checkpoints" / "last.ckpt")}))
        cfg = OmegaConf.load(ev / ".hydra" / "config.yaml")
        cfg.model.init_from, cfg.name = None, name  # evaluate.py starts no training
        OmegaConf.save(cfg, ev / ".hydra" / "config.yaml")
        ov = [o for o in yaml.safe_load((ev / ".hydra" / "overrides.yaml").read_text()) if "init_from" not in o]
        (ev / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(ov + [f"name={name}"]))
    rows = {r["job"]: r for r in collect(sweep).measured()}
    assert rows["eval_student"]["steps_total"] == 4
    assert rows["eval_student"]["images_total"] == rows["student"]["images_total"]
    assert rows["eval_scratch"]["steps_total"] == 4 and "global_step" not in rows["eval_scratch"]


# ----- LapSRN's x4 table ------------------------------------------------------------------------------------------
def test_lapsrn_table_is_selected_by_t91_data_and_checks_bicubic(tmp_path):
    t = load_published("lapsrn_x4")
    labels = [r.label for r in t.rows]
    assert labels == ["bicubic", "A+ (trained on T91)", "SRCNN (trained on ImageNet)",
                      "FSRCNN (trained on T91 + General100)", "VDSR (trained on T91 + BSD200)"]
    vdsr = t.rows[-1].values
    assert (vdsr["Set5/psnr"], vdsr["Set14/ssim"], vdsr["BSD100/psnr"], vdsr["Urban100/ssim"]) == (
        31.35, 0.7674, 27.29, 0.7524)
    assert t.rows[0].values["Set5/psnr"] == 28.42 and t.rows[1].values["Urban100/psnr"] == 24.32
    assert tables_for_data("t91") == ["lapsrn_x4"] and tables_for_data("embedded") == []
    assert tables_for_data("t91", 4) == ["lapsrn_x4"] and tables_for_data("t91", 2) == []  # x4 numbers, x4 runs

    # a run trained with data=t91 (Hydra's choice), no `published` key: the report shows LapSRN's rows
    sweep = tmp_path / "t91"
    job = sweep / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["data=t91", "model.res_blocks=4"]))
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"model": {"res_blocks": 4}, "data": {"name": "t91"}}))
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": {"data": "t91"}}}}))
    sets = {"Set5": {"psnr": 30.1, "ssim": 0.85}}
    (job / "metrics.json").write_text(json.dumps({"status": "finished", "psnr": 30.1, "sets": sets, "params": 10,
                                                  "bicubic": {"Set5": {"psnr": 28.43, "ssim": 0.8113}}}))
    assert main([str(sweep), "--no-plots"]) == 0
    rows = read_csv(sweep / "report.csv")
    pub = [r for r in rows if r["source"] == "published"]
    assert [r["label"] for r in pub] == labels[1:] + ["bicubic"]
    assert all(r["status"] == "other method" for r in pub[:-1]) and pub[0]["job"] == ""
    bic = next(r for r in rows if r["source"] == "bicubic")
    assert bic["reproduced"] == "yes" and float(bic["Set5/psnr_minus_published"]) == pytest.approx(0.01)
    md = (sweep / "report.md").read_text()
    assert "VDSR (trained on T91 + BSD200)" in md and "31.35" in md


def test_results_doc_fills_marked_tables_from_report_csv(tmp_path):
    """docs/results.md's tables come from the reports (lightning_sr.report.results_doc): a marked block is replaced
    by the measured rows of <reports>/<name>/report.csv, a missing report leaves "Not run yet.", text outside the
    markers is kept."""
    from lightning_sr.report.results_doc import fill

    rep = tmp_path / "reports" / "q2_depth8"
    rep.mkdir(parents=True)
    cols = ["name", "source", "reference", "n", "params", "macs", "Set5/psnr", "Set5/psnr_std", "Set5/delta_psnr",
            "Set5/delta_psnr_lo", "Set5/delta_psnr_hi", "Set5/delta_psnr_sig", "steps_total", "global_step",
            "train_time_s"]
    rows = [["pruned8", "measured", "", "2", "1000", "2e9", "30.5", "0.1", "0.25", "0.1", "0.4", "*", "9500", "1500",
             "60"],
            ["scratch8", "measured", "reference", "2", "1000", "2e9", "30.25", "0.05", "reference", "", "", "", "",
             "9500", "600"],
            ["", "bicubic", "", "", "", "", "28.4", "", "", "", "", "", "", "", ""]]
    with open(rep / "report.csv", "w", newline="") as f:
        csv.writer(f).writerows([cols, *rows])
    doc = tmp_path / "results.md"
    doc.write_text("intro\n<!-- report:q2_depth8 -->\nold\n<!-- /report:q2_depth8 -->\nmiddle\n"
                   "<!-- report:q9 -->\n<!-- /report:q9 -->\nend\n")
    assert fill(doc, tmp_path / "reports") == ["q2_depth8"]
    text = doc.read_text()
    assert text.startswith("intro\n") and "\nmiddle\n" in text and text.endswith("end\n") and "old" not in text
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    assert lines[0].split(" | ")[:4] == ["| row", "n", "params", "GMACs"]
    assert lines[1] == "| pruned8 | 2 | 1,000 | 2.000 | 30.50 ± 0.10 | +0.250 [+0.100, +0.400] * | 9,500 | 60 |"
    assert lines[2] == "| scratch8 | 2 | 1,000 | 2.000 | 30.25 ± 0.05 | reference | 9,500 | 600 |"
    assert len(lines) == 3  # the bicubic row is not a measured row
    assert "<!-- report:q9 -->\nNot run yet.\n<!-- /report:q9 -->" in text


def test_side_by_side_latency_times_each_row_once_and_fills_the_results_doc(tmp_path):
    """lightning_sr.report.latency: every row's final model (the first seed of a row; an evaluation job's ckpt_path)
    loaded and timed in one process, the ratio to the reference row; the results doc shows these, never the per-job
    latencies of metrics.json (measured at whatever load each job ran under)."""
    from lightning_sr.report import latency
    from lightning_sr.report.results_doc import compact_table, read_latency
    from tests.compression_helpers import SPEC, save_ckpt, tiny_generator

    rep = tmp_path / "reports" / "q"
    rep.mkdir(parents=True)
    jobs = {"small_s0": ("small", 1, "last_ckpt"), "small_s1": ("small", 1, "last_ckpt"),
            "big_s0": ("big", 4, "last_ckpt"), "big_eval": ("big_eval", 4, "ckpt_path")}
    for job, (name, blocks, key) in jobs.items():
        d = tmp_path / job
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "config.yaml").write_text(f"name: {name}\n")
        ck = save_ckpt(tiny_generator(**{**SPEC, "res_blocks": blocks}), {**SPEC, "res_blocks": blocks},
                       d / "model.ckpt")
        (d / "metrics.json").write_text(json.dumps({"status": "finished", "name": name, key: str(ck)}))
        (rep / job).symlink_to(d)
    # the report's rows (built first): a row's seeds share a line, the reference is the report's
    cols = ["name", "job", "source", "reference", "n", "params", "macs", "latency_ms", "Set5/psnr"]
    with open(rep / "report.csv", "w", newline="") as f:
        csv.writer(f).writerows([cols, ["small", "small_s0,small_s1", "measured", "reference", "2", "1", "1e9", "999",
                                        "30"],
                                 ["big", "big_s0", "measured", "", "1", "2", "2e9", "1", "31"],
                                 ["big_eval", "big_eval", "measured", "", "1", "2", "2e9", "1", "31"],
                                 ["", "", "published", "", "", "", "", "", "32"]])
    rows = latency.measure(rep, rounds=3)
    got = {r["row"]: r for r in rows}
    assert sorted(got) == ["big", "big_eval", "small"]  # small_s1 is small's second seed: not timed again
    assert got["small"]["ratio"] == "1.000" and got["small"]["model_file"] == str(tmp_path / "small_s0" / "model.ckpt")
    assert got["big_eval"]["model_file"] == str(tmp_path / "big_eval" / "model.ckpt")
    assert all(float(r["latency_ms"]) > 0 and r["rounds"] == 3 for r in rows)
    assert read_latency(rep)["big"]["latency_ms"] == got["big"]["latency_ms"]
    again = {r["row"]: r for r in latency.measure(rep, reference="name=big", rounds=3)}  # another reference: asked
    assert again["big"]["ratio"] == "1.000" and again["small"]["ratio"] != "1.000"

    table = compact_table(rep / "report.csv")
    lines = [ln for ln in table.splitlines() if ln.startswith("| ")]
    assert "CPU latency vs reference (side by side)" in lines[0]
    # the table shows latency.csv's ratios (here to big, the reference asked of the latency tool)
    assert lines[1].startswith(f"| small | 2 | 1 | 1.000 | {float(again['small']['ratio']):.2f}x |") and "| 2.000 | 1.00x |" in lines[2]
    assert "999" not in table and "fastest of 3 alternated rounds in one process" in table
    (rep / "latency.csv").unlink()  # none measured side by side: no latency column at all
    assert "latency" not in compact_table(rep / "report.csv").split("_From")[0]


def test_side_by_side_latency_rows_edge_cases(tmp_path, capsys):
    """A row whose first seed failed is timed with its next finished seed; an int8 row whose program is missing is
    left out with one line (the others are still timed); two rows sharing a name (name swept with another key) get
    the job folders added, in latency.csv and in the results table alike; a --reference that matches no row is one
    line naming the rows."""
    from lightning_sr.errors import ConfigError
    from lightning_sr.report import latency
    from lightning_sr.report.results_doc import compact_table
    from tests.compression_helpers import SPEC, save_ckpt, tiny_generator

    rep = tmp_path / "rep"
    rep.mkdir()
    for job, status in (("a_s0", "failed"), ("a_s1", "finished"), ("b_x1", "finished"), ("b_x2", "finished")):
        d = tmp_path / job
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "config.yaml").write_text("name: x\n")
        ck = save_ckpt(tiny_generator(**SPEC), SPEC, d / "model.ckpt")
        (d / "metrics.json").write_text(json.dumps({"status": status, "last_ckpt": str(ck)}))
        (rep / job).symlink_to(d)
    cols = ["name", "model.x", "job", "source", "reference", "n", "params", "macs", "Set5/psnr"]
    with open(rep / "report.csv", "w", newline="") as f:
        csv.writer(f).writerows([cols, ["a", "0", "a_s0,a_s1", "measured", "reference", "2", "1", "1e9", "30"],
                                 ["b", "1", "b_x1", "measured", "", "1", "1", "1e9", "30"],
                                 ["b", "2", "b_x2", "measured", "", "1", "1", "1e9", "30"],
                                 ["b", "2", "b_x2", "int8", "", "1", "1", "1e9", "30"]])
    got = {r["row"]: r for r in latency.measure(rep, rounds=1)}
    assert sorted(got) == ["a", "b [b_x1]", "b [b_x2]"]
    assert got["a"]["model_file"] == str(tmp_path / "a_s1" / "model.ckpt") and got["a"]["ratio"] == "1.000"
    assert "b (int8): no finished job of this row has its model file" in capsys.readouterr().out
    table = compact_table(rep / "report.csv")
    assert "| b [b_x1] |" in table and "| b [b_x2] |" in table and "| b (int8) |" in table
    with pytest.raises(ConfigError, match="--reference model.x=9 matches no timed row .*rows: a, b \\[b_x1\\]"):
        latency.measure(rep, reference="model.x=9", rounds=1)
