"""The seams later features plug into: one place for each thing (issue 9), each exercised for real."""

from __future__ import annotations

import ast
import csv
from pathlib import Path

import pytest
import torch
from torch import nn

from lightning_sr.config import build_module
from lightning_sr.errors import ConfigError
from lightning_sr.networks import (
    MAIN,
    MultiOutput,
    build_generator,
    conv_layers,
    is_conv,
    make_conv,
    named_outputs,
    register,
    register_conv,
)
from lightning_sr.run import train
from tests.conftest import ROOT, SMOKE, compose
from tests.helpers import ConstantLossTerm, RecordingDataModule

PKG = ROOT / "lightning_sr"


# ----- imports: layers only call downwards ------------------------------------------------------------------
def _imports(path: Path) -> set[str]:
    mods = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            mods.add(node.module)
        elif isinstance(node, ast.Import):
            mods.update(a.name for a in node.names)
    return mods


def test_networks_do_not_import_data_and_loggers_do_not_import_the_report():
    networks = sorted((PKG / "networks").glob("*.py"))
    assert len(networks) > 5  # the folder is there (a renamed folder would make the loop below check nothing)
    for f in networks:
        bad = {m for m in _imports(f) if m.startswith("lightning_sr.data")}
        assert not bad, f"{f.name} imports {bad}"
    assert not {m for m in _imports(PKG / "loggers.py") if m.startswith("lightning_sr.report")}
    # the registry imports no architecture (they register themselves): no networks <-> registry cycle
    archs = {f"lightning_sr.networks.{a}" for a in ("srresnet", "multi_exit", "video", "bicubic", "discriminator",
                                                  "video_discriminator")}
    assert not _imports(PKG / "networks" / "registry.py") & (archs | {"lightning_sr.networks"})


def test_atomic_writes_have_one_helper():
    """Files that runs read back are written by lightning_sr.fs only (no ad-hoc tmp + rename elsewhere)."""
    offenders = [str(f.relative_to(PKG)) for f in PKG.rglob("*.py") if f.name != "fs.py"
                 and ("os.replace(" in f.read_text() or ".replace(out)" in f.read_text())]
    assert not offenders


# ----- outputs ----------------------------------------------------------------------------------------------
class _TwoHeads(MultiOutput, nn.Module):
    """A new multi-output generator: every tool must handle it through named_outputs alone."""

    def __init__(self, scale: int = 4, **unused):  # takes (and ignores) the SRResNet config keys
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(3, 3 * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x):
        return self.forward_outputs(x)[MAIN]

    def forward_outputs(self, x, return_features=False):
        y = self.shuffle(self.conv(x))
        outs = {MAIN: y, "half": y * 0.5}
        return (outs, {}) if return_features else outs

    @property
    def output_names(self):
        return [MAIN, "half"]


def test_a_new_multi_output_generator_is_evaluated_on_every_output(tmp_path):
    register("two_heads", keys=("scale", "res_blocks", "channels", "norm", "act", "skip", "res_scale"))(_TwoHeads)
    m = train(compose(SMOKE + ["model.arch=two_heads", "trainer.max_steps=2", "cost.latency=false"], tmp_path))
    assert set(m["exits"]["embedded"]) == {"half"} and "psnr" in m["sets"]["embedded"]
    rows = list(csv.DictReader(open(tmp_path / "per_image.csv")))
    assert {r["exit"] for r in rows} == {"", "half"}
    g = build_generator({"arch": "two_heads", "scale": 4})
    assert list(named_outputs(g, torch.rand(1, 3, 4, 4))) == [MAIN, "half"]


# ----- convolutions come from one factory ------------------------------------------------------------------
class _TaggedConv(nn.Conv2d):
    pass


def test_a_registered_conv_kind_is_built_and_recognised():
    register_conv("tagged", _TaggedConv)
    conv = make_conv(4, 8, 3, kind="tagged")
    assert type(conv) is _TaggedConv and conv.padding == (1, 1) and is_conv(conv)
    with pytest.raises(ConfigError, match="model.conv='nope'"):
        make_conv(4, 8, 3, kind="nope")
    g = build_generator({"arch": "srresnet", "res_blocks": 2, "channels": 8, "scale": 4})
    names = [n for n, _ in conv_layers(g)]
    assert names[0] == "head.0" and names[-1] == "tail" and "body.1.conv2" in names


# ----- the data module and the module come from the config ---------------------------------------------------
def test_datamodule_class_comes_from_the_config(tmp_path):
    before = RecordingDataModule.instances
    m = train(compose(SMOKE + ["data._target_=tests.helpers.RecordingDataModule", "trainer.max_steps=2",
                               "cost.latency=false"], tmp_path))
    assert m["status"] == "finished" and RecordingDataModule.instances == before + 1
    with pytest.raises(ConfigError, match="data._target_"):
        train(compose(SMOKE + ["data._target_=no.such.Module"], tmp_path / "b"))


def test_constructor_type_errors_are_not_config_errors(monkeypatch):
    from lightning_sr.lit_modules import MODULES, SRModule

    class Broken(SRModule):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            len(5)  # a bug inside the constructor: TypeError

    monkeypatch.setitem(MODULES, "broken", Broken)
    with pytest.raises(TypeError, match="has no len"):
        build_module(compose(SMOKE + ["model.module=broken"]))
    with pytest.raises(ConfigError, match="model.colour is not an argument of model.module='sr'"):
        build_module(compose(SMOKE + ["+model.colour=red"]))


# ----- one loss hook, every module ------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["srresnet", "srgan", "multi_exit"])
def test_callbacks_add_named_loss_terms_to_every_module(model, tmp_path):
    extra = {"srgan": ["model.perceptual.pretrained=false", "model.discriminator.channels=8"],
             "multi_exit": ["model.res_blocks=2", "model.exits=[1]"]}.get(model, [])
    ConstantLossTerm.calls.clear()
    m = train(compose(SMOKE + [f"model={model}", *extra, "trainer.max_steps=2", "cost.latency=false",
                               "+callbacks.const._target_=tests.helpers.ConstantLossTerm"], tmp_path))
    assert m["status"] == "finished"
    assert ConstantLossTerm.calls and all(c.endswith(":generator") for c in ConstantLossTerm.calls)
    rows = list(csv.DictReader(open(next(tmp_path.glob("csv/*/metrics.csv")))))
    logged = {k for r in rows for k, v in r.items() if v}
    assert {"train/const", "train/loss"} <= logged
    own = {"srresnet": {"train/pixel"}, "srgan": {"train/pixel", "train/perceptual", "train/gan", "train/loss_d"},
           "multi_exit": {"train/exit1", "train/exit2"}}[model]
    assert own <= logged, logged
    # the logged total is the sum of the logged terms
    for r in rows:
        if r.get("train/loss"):
            parts = [float(v) for k, v in r.items() if k.startswith("train/") and v and k not in
                     ("train/loss", "train/loss_d") and "/" not in k[len("train/"):]]
            assert float(r["train/loss"]) == pytest.approx(sum(parts), rel=1e-5)


# ----- cost: one input size and one key list ---------------------------------------------------------------
def test_compression_and_run_cost_use_the_same_input_and_keys(tmp_path):
    from lightning_sr.cost import COST_KEYS
    from tests.compression_helpers import SPEC, save_ckpt, tiny_generator

    spec = {**SPEC, "res_blocks": 2}
    ckpt = save_ckpt(tiny_generator(**spec), spec, tmp_path / "dense.ckpt")
    m = train(compose(SMOKE + ["compression=channel_prune", f"model.init_from={ckpt}", "trainer.max_steps=2",
                               "cost.input_size=[3,24,24]", "cost.latency=false"], tmp_path / "run"))
    (entry,) = m["compression"]
    assert entry["before"]["macs_input"] == entry["after"]["macs_input"] == m["cost"]["macs_input"] == "3x24x24"
    assert entry["after"]["macs"] == m["cost"]["macs"]
    assert set(entry["after"]) - {"psnr", "sets"} <= set(COST_KEYS)
