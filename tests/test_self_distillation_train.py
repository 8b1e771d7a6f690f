"""A real (tiny) self-distillation run: per-exit metrics and costs, then export -> evaluate -> init_from."""

from __future__ import annotations

import csv
import json

import pytest

from lightning_sr.cost import count_params, cpu_latency_ms
from lightning_sr.export import export_exit
from lightning_sr.networks import SRResNet
from lightning_sr.run import evaluate, train
from tests.conftest import SMOKE, compose

# one validation during training (plus the final one) on one image: validation dominates the run time
MULTI = SMOKE + ["model=multi_exit", "model.res_blocks=4", "model.exits=[2]", "trainer.val_check_interval=4",
                 "+trainer.limit_val_batches=1",
                 # BasicSR init starts a no-skip network near zero output: a large LR separates the exits in 4 steps
                 "model.optim.lr=5e-3"]
SR_ARGS = dict(channels=8, scale=4, norm="batch", act="prelu", skip="none")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("sd_run")
    mp = pytest.MonkeyPatch()  # the module-scoped run needs the conftest cache/W&B environment too
    mp.setenv("LSR_CACHE", str(tmp_path_factory.getbasetemp() / "lsr_cache"))
    mp.setenv("WANDB_MODE", "offline")
    try:
        metrics = train(compose(MULTI, out))
    finally:
        mp.undo()
    return out, metrics


def test_metrics_have_every_exit_and_its_cost(trained):
    out, metrics = trained
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["status"] == "finished" and on_disk["global_step"] == 4
    assert on_disk["generator"]["arch"] == "multi_exit"
    # the main output is the deepest exit; exit2 is reported separately
    main, ex2 = on_disk["sets"]["embedded"], on_disk["exits"]["embedded"]["exit2"]
    for r in (main, ex2):  # limit_val_batches limits validation; the final evaluation covers every image
        assert 5 < r["psnr"] < 50 and 0 < r["ssim"] <= 1 and r["images"] == 2
    assert main["psnr"] != ex2["psnr"]
    # cost of each exit = cost of the standalone SRResNet-k
    costs = on_disk["exit_cost"]
    assert set(costs) == {"exit2", "exit4"}
    assert costs["exit2"]["params"] == count_params(SRResNet(2, **SR_ARGS))
    assert costs["exit4"]["params"] == count_params(SRResNet(4, **SR_ARGS))
    assert costs["exit2"]["macs"] < costs["exit4"]["macs"]
    # exit2's latency is a standalone SRResNet-2's: timed here through the one cost function on the same input, it
    # agrees within a factor of 10 (a unit slip, seconds or microseconds, is a factor of 1000)
    size = tuple(compose(MULTI).cost.input_size)
    alone, _ = cpu_latency_ms(SRResNet(2, **SR_ARGS), size, warmup=2, repeats=9)
    assert 0.1 < costs["exit2"]["latency_ms"] / alone < 10, (costs["exit2"]["latency_ms"], alone)
    assert costs["exit4"]["params"] < on_disk["params"]  # the whole network also holds exit2's head
    # per-image records of both outputs
    rows = list(csv.DictReader(open(out / "per_image.csv")))
    assert {r["exit"] for r in rows} == {"", "exit2"}


def test_logged_keys(trained):
    out, _ = trained
    files = list((out / "csv").rglob("metrics.csv"))
    assert len(files) == 1
    header = files[0].read_text().splitlines()[0].split(",")
    for key in ("val/embedded/exit2/psnr", "val/embedded/exit2/ssim", "val/embedded/psnr", "val/psnr",
                "train/loss", "train/exit2", "train/exit4",
                "cost/exit2/params", "cost/exit2/macs", "cost/exit2/latency_ms", "cost/exit4/params"):
        assert key in header, key


def test_exported_exit_evaluates_like_the_exit(trained, tmp_path):
    out, metrics = trained
    exported = export_exit(out / "checkpoints" / "last.ckpt", 2, tmp_path / "exit2.ckpt")
    ev = evaluate(compose(["data=embedded", f"ckpt_path={exported}"], tmp_path / "eval", config_name="evaluate"))
    assert ev["generator"] == {"arch": "srresnet", "res_blocks": 2, **SR_ARGS, "res_scale": 1.0}
    assert ev["params"] == metrics["exit_cost"]["exit2"]["params"]
    # the same image through the exported SRResNet-2 gives exit2's numbers from training
    rows = {(r["exit"], r["image"]): r for r in csv.DictReader(open(out / "per_image.csv"))}
    assert len(rows) == 4  # two outputs x two images
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["sets"]["embedded"]["images"] == 2
    ev_rows = {r["image"]: r for r in csv.DictReader(open(tmp_path / "eval" / "per_image.csv"))}
    for image in ("astronaut", "coffee"):
        for m in ("psnr", "ssim"):
            assert float(ev_rows[image][m]) == pytest.approx(float(rows[("exit2", image)][m]), abs=1e-5)
            assert float(ev_rows[image][m]) != pytest.approx(float(rows[("", image)][m]), abs=1e-5)


def test_exported_exit_is_a_channel_pruning_student(trained, tmp_path):
    """The exported exit is a plain SRResNet student (model.init_from) for the compression callbacks."""
    from lightning_sr.checkpoint import load_generator

    out, metrics = trained
    exported = export_exit(out / "checkpoints" / "last.ckpt", 2, tmp_path / "exit2.ckpt")
    m = train(compose(SMOKE + [f"model.init_from={exported}", "compression=channel_prune",
                               "compression.channel_prune.ratio=0.5", "compression.channel_prune.evaluate=false",
                               "trainer.max_steps=2", "+trainer.limit_val_batches=1"], tmp_path / "pruned"))
    assert m["status"] == "finished" and m["generator"]["arch"] == "srresnet"
    assert m["generator"]["res_blocks"] == 2
    assert m["params"] < metrics["exit_cost"]["exit2"]["params"]
    # the pruned exit reloads from its checkpoint alone
    g, spec = load_generator(m["last_ckpt"])
    assert spec["arch"] == "srresnet" and count_params(g) == m["params"]


def test_channel_pruned_multi_exit_exports_pruned_exits(trained, tmp_path):
    """Channel pruning the whole multi-exit network: exits shrink, stay exportable and equal to the exit."""
    import torch

    from lightning_sr.checkpoint import load_generator

    _, unpruned = trained
    m = train(compose(MULTI + ["compression=channel_prune", "compression.channel_prune.evaluate=false",
                               "trainer.max_steps=2"], tmp_path / "run"))
    assert m["generator"]["arch"] == "multi_exit" and set(m["exits"]["embedded"]) == {"exit2"}
    for e in ("exit2", "exit4"):
        assert m["exit_cost"][e]["params"] < unpruned["exit_cost"][e]["params"]
    out = export_exit(m["last_ckpt"], 2, tmp_path / "exit2.ckpt")
    g, _ = load_generator(m["last_ckpt"])
    s, spec = load_generator(out)
    assert spec["arch"] == "srresnet" and count_params(s) == m["exit_cost"]["exit2"]["params"]
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(s.eval()(x), g.eval().forward_exits(x)["exit2"], rtol=0, atol=0)
