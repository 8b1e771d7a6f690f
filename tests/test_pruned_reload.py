"""A pruned checkpoint carries its own architecture: a fresh process rebuilds it (weights_only=True)
without any config, and evaluate.py / model.init_from use it as is."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile

import pytest
import torch

from lightning_sr.checkpoint import load_generator
from lightning_sr.run import train
from lightning_sr.transforms.blocks import prune_blocks
from lightning_sr.transforms.channels import prune_channels
from tests.compression_helpers import SPEC, save_ckpt, tiny_generator
from tests.conftest import ROOT, SMOKE, compose, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

LOAD_AND_RUN = """
import sys, torch
from lightning_sr.checkpoint import load_generator
g, spec = load_generator(sys.argv[1])
x = torch.load(sys.argv[2], weights_only=True)
with torch.no_grad():
    torch.save({"out": g.eval()(x), "spec": spec, "shapes": {k: tuple(v.shape) for k, v in g.state_dict().items()}},
               sys.argv[3])
"""


def fresh_process_output(ckpt, x, tmp_path):
    torch.save(x, tmp_path / "x.pt")
    subprocess.run([sys.executable, "-c", LOAD_AND_RUN, str(ckpt), str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
                   cwd=ROOT, check=True, timeout=300, capture_output=True)
    return torch.load(tmp_path / "y.pt", weights_only=True)


def test_block_and_channel_pruned_model_reloads_in_a_fresh_process(tmp_path):
    spec = {**SPEC, "res_blocks": 4, "norm": "batch"}
    g = tiny_generator(**spec)
    prune_blocks(g, [0, 3])
    prune_channels(g, 0.5, "l1", protect=["tail"])  # trunk, blocks and upsampler all narrower
    spec["res_blocks"] = 2
    ckpt = save_ckpt(g, spec, tmp_path / "pruned.ckpt")
    x = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        ref = g.eval()(x)
    y = fresh_process_output(ckpt, x, tmp_path)
    torch.testing.assert_close(y["out"], ref, rtol=0, atol=1e-6)  # other thread count: float sums may reorder
    assert y["spec"]["res_blocks"] == 2
    assert y["shapes"] == {k: tuple(v.shape) for k, v in g.state_dict().items()}
    assert y["shapes"]["head.0.weight"][0] == 4 and y["shapes"]["upsampler.0.0.weight"][0] == 16


def test_trained_pruned_checkpoint_evaluates_and_initialises(tiny_data, dense_ckpt, tmp_path):
    """train.py output -> evaluate.py (fresh process, no model config) gives the training's own final PSNR;
    model.init_from starts a new run from the pruned architecture."""
    m = train(compose(SMOKE + tiny_data + ["compression=[block_prune,channel_prune]", "compression.block_prune.keep=3",
                                           "compression.channel_prune.protect=[tail]",
                                           f"model.init_from={dense_ckpt}"], tmp_path / "train"))
    last = m["last_ckpt"]
    # no import path of a network or LightningModule class is stored (pickled classes, config strings): renaming
    # those packages (issue 20: models/ -> networks/, modules/ -> lit_modules/) leaves every checkpoint readable
    with zipfile.ZipFile(last) as z:
        stored = b"".join(z.read(n) for n in z.namelist() if n.endswith(".pkl"))
    assert b"lightning_sr" in stored  # the reader sees the pickle (the callbacks' config targets are in it)
    assert not re.findall(rb"lightning_sr\.(?:networks|lit_modules|models|modules)\b", stored)
    x = torch.rand(1, 3, 8, 8)
    g, spec = load_generator(last)
    assert spec["res_blocks"] == 3 and g.head[0].out_channels == 4
    with torch.no_grad():
        ref = g.eval()(x)

    data = [o for o in tiny_data if o.startswith(("data.", "cost."))]
    run_cli("evaluate.py", [f"ckpt_path={last}", "data=folder", *data, "progress_bar=false",
                            f"hydra.run.dir={tmp_path / 'eval'}"], timeout=300)
    ev = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert ev["status"] == "finished" and ev["generator"]["res_blocks"] == 3
    assert ev["params"] == m["params"]
    assert ev["psnr"] == pytest.approx(m["psnr"], abs=1e-6)

    from lightning_sr.config import build_module

    module = build_module(compose(SMOKE + tiny_data + [f"model.init_from={last}"], tmp_path / "next"))
    with torch.no_grad():
        assert torch.equal(module.generator.eval()(x), ref)
