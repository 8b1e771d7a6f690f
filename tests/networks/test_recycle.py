"""Weight Recycle (issue 14): the convolution, the model option on every SR architecture, export to plain
convolutions, the classification task on CIFAR-10 layouts, and the bad inputs."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from lightning_sr.checkpoint import ARCH_KEY, PREFIX, load_generator
from lightning_sr.config import generator_spec, validate_config
from lightning_sr.cost import count_macs, count_params
from lightning_sr.errors import ConfigError, DataError
from lightning_sr.export import materialize_checkpoint
from lightning_sr.fs import atomic_torch_save
from lightning_sr.networks import RecycleConv2d, build_generator, recycled_layers
from tests.conftest import SMOKE, compose


# ----- the convolution ------------------------------------------------------------------------------------------
def test_recycle_conv_stores_a_quarter_and_its_stored_filters_learn():
    torch.manual_seed(0)
    rc, plain = RecycleConv2d(8, 16, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1)
    assert rc.weight.numel() * 4 == plain.weight.numel()
    w = rc.full_weight()
    for j in range(4):  # output group j is the stored quarter rotated by j x 90 degrees
        torch.testing.assert_close(w[4 * j:4 * j + 4], torch.rot90(rc.weight, j, dims=(2, 3)), rtol=0, atol=0)
    x = torch.randn(2, 8, 10, 10)
    rc(x).square().mean().backward()
    assert rc.weight.grad is not None and rc.weight.grad.abs().sum() > 0  # the authors' .data copy gives no gradient
    assert rc.bias.grad is not None and rc.bias.shape == (4,)  # shared bias: out/4 values


def test_rotating_the_input_rotates_the_output_and_moves_each_group_one_place():
    torch.manual_seed(0)
    rc = RecycleConv2d(6, 12, 3, padding=1)
    x = torch.randn(1, 6, 9, 9)
    with torch.no_grad():
        y, y_rot = rc(x), rc(torch.rot90(x, 1, dims=(2, 3)))
    q = 3
    for j in range(4):  # conv(rot x, rot^j w) = rot conv(x, rot^(j-1) w)
        expect = torch.rot90(y[:, q * ((j - 1) % 4):q * ((j - 1) % 4) + q], 1, dims=(2, 3))
        torch.testing.assert_close(y_rot[:, q * j:q * j + q], expect, rtol=1e-5, atol=1e-5)


# ----- the model option -----------------------------------------------------------------------------------------
ARCH_CASES = {"srresnet": ["model=srresnet"], "srgan": ["model=srgan"], "multi_exit": ["model=multi_exit", "model.exits=[1]"],
              "frvsr": ["model=frvsr", "data=embedded_video"]}


@pytest.mark.parametrize("name", list(ARCH_CASES))
def test_model_conv_recycle_cuts_stored_params_keeps_macs_and_survives_a_checkpoint(name, tmp_path):
    base = ARCH_CASES[name] + ["model.channels=8", "model.res_blocks=2"]
    plain = build_generator(generator_spec(compose(base)))
    spec = generator_spec(compose(base + ["model.conv=recycle"]))
    gen = build_generator(spec)
    layers = recycled_layers(gen)
    assert layers and all(".body." in f".{n}" or "srnet" in n for n in layers), layers  # residual blocks by default
    rec = [m for m in gen.modules() if isinstance(m, RecycleConv2d)]
    stored = sum(m.weight.numel() + m.bias.numel() for m in rec)  # shared bias: out/4 values too
    assert count_params(plain) - count_params(gen) == 3 * stored  # 3 of every 4 filters (and biases) not stored
    if name != "frvsr":  # MACs are those of the full convolutions (the video model is counted per clip elsewhere)
        assert count_macs(gen, (3, 8, 8)) == count_macs(plain, (3, 8, 8))
    path = tmp_path / "g.ckpt"
    atomic_torch_save({"state_dict": {PREFIX + k: v for k, v in gen.state_dict().items()}, ARCH_KEY: spec}, path)
    loaded, loaded_spec = load_generator(path)  # weights_only=True inside
    assert loaded_spec == spec and recycled_layers(loaded) == layers
    for a, b in zip(gen.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", list(ARCH_CASES))
def test_recycled_model_trains_and_last_ckpt_rebuilds_the_trained_network(name, tmp_path):
    """A real Trainer run (what train.py runs) of each SR architecture with model.conv=recycle: metrics.json
    records the recycled generator, and last.ckpt alone (weights_only) rebuilds the recycled network whose output
    is the in-run model's, bit for bit."""
    from lightning_sr.checkpoint import read_checkpoint
    from lightning_sr.run import train
    from tests.helpers import KeepModule

    over = [o for o in SMOKE if not o.startswith(("model.res_blocks", "model.channels"))] + ARCH_CASES[name] + [
        "model.channels=8", "model.res_blocks=2", "model.conv=recycle", "cost.latency=false",
        "callbacks.model_summary=null", "+callbacks.keep._target_=tests.helpers.KeepModule"]
    KeepModule.last = None
    m = train(compose(over, tmp_path))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["status"] == "finished" and saved["global_step"] == m["global_step"] > 0
    assert saved["generator"]["conv"] == "recycle" and saved["params"] == m["params"]
    in_run = KeepModule.last.generator.cpu().eval()
    loaded, spec = load_generator(tmp_path / "checkpoints" / "last.ckpt")  # weights_only=True inside
    assert spec.get("conv") == "recycle" and recycled_layers(loaded) == recycled_layers(in_run) != []
    assert read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == saved["global_step"]
    assert count_params(loaded) == saved["params"]
    torch.manual_seed(0)
    x = torch.rand(1, 3, 3, 12, 12) if name == "frvsr" else torch.rand(1, 3, 12, 12)  # frvsr: a 3-frame clip
    with torch.no_grad():
        if name == "frvsr":
            from lightning_sr.inference import stream_frames

            a = torch.cat(list(stream_frames(in_run, (f[None] for f in x[0]), 4)))
            b = torch.cat(list(stream_frames(loaded.eval(), (f[None] for f in x[0]), 4)))
        else:
            from lightning_sr.networks import named_outputs

            a, b = named_outputs(in_run, x), named_outputs(loaded.eval(), x)
            assert a.keys() == b.keys()
            a, b = torch.cat([a[k] for k in sorted(a)]), torch.cat([b[k] for k in sorted(b)])
    assert torch.equal(a, b)
    # and it is the trained network, not the initial one
    init = build_generator(spec)
    assert any(not torch.equal(p, q) for p, q in zip(init.state_dict().values(), loaded.state_dict().values(),
                                                       strict=True))


def test_scope_all_recycles_every_conv_but_head_and_tail():
    gen = build_generator(generator_spec(compose(["model.channels=8", "model.res_blocks=1", "model.conv=recycle",
                                                  "model.conv_scope=all"])))
    layers = recycled_layers(gen)
    assert "head.0" not in layers and "tail" not in layers
    assert {"body.0.conv1", "body.0.conv2", "body_tail.0"} <= set(layers) and any("upsampler" in n for n in layers)


def test_materialized_checkpoint_is_a_plain_network_with_the_same_output(tmp_path):
    torch.manual_seed(0)
    spec = generator_spec(compose(["model=multi_exit", "model.channels=8", "model.res_blocks=4",
                                   "model.exits=[2]", "model.conv=recycle", "model.conv_scope=all"]))
    gen = build_generator(spec).eval()
    for m in gen.modules():  # non-trivial weights everywhere (the default init starts the tail at zero)
        if isinstance(m, (RecycleConv2d, nn.Conv2d)):
            nn.init.normal_(m.weight, std=0.1)
    src = tmp_path / "rec.ckpt"
    atomic_torch_save({"state_dict": {PREFIX + k: v for k, v in gen.state_dict().items()}, ARCH_KEY: spec}, src)
    out = materialize_checkpoint(src)
    plain, plain_spec = load_generator(out)
    assert plain_spec.get("conv", "normal") == "normal" and not recycled_layers(plain)
    assert not any(isinstance(m, RecycleConv2d) for m in plain.modules())
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        for a, b in zip(gen(x), plain.eval()(x), strict=True):  # every exit
            torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
    from lightning_sr.deploy import export_ready  # ONNX/TorchScript export materialises by itself

    ready, ready_spec = export_ready(gen, spec)
    assert not recycled_layers(ready) and ready_spec.get("conv") == "normal"


# ----- bad input --------------------------------------------------------------------------------------------------
def test_width_not_divisible_by_four_names_the_layer_and_the_nearest_width():
    with pytest.raises(ConfigError) as e:
        validate_config(compose(SMOKE + ["model.channels=10", "model.conv=recycle"]), need_train=False)
    msg = str(e.value)
    assert "body.0.conv1" in msg and "model.channels=8 or 12" in msg and "\n" not in msg


def test_recycle_on_an_architecture_without_the_option_is_refused():
    with pytest.raises(ConfigError, match=r"model.conv=recycle is not supported by model.arch='bicubic'.*use"):
        generator_spec(compose(["model=bicubic", "+model.conv=recycle"]))


# ----- classification on CIFAR-10 layouts -------------------------------------------------------------------------
CLASSES = [f"c{i}" for i in range(10)]


def _fake_cifar(n_train: int = 10, n_test: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 10) for n in (n_train, n_test)]


def _write_batches(root, train, test):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    xs, ys = train
    for i, part in enumerate(np.array_split(np.arange(len(xs)), 5), start=1):
        data = xs[part].transpose(0, 3, 1, 2).reshape(len(part), -1)  # CIFAR rows: 1024 R, 1024 G, 1024 B
        with open(d / f"data_batch_{i}", "wb") as f:
            pickle.dump({b"data": data, b"labels": [int(v) for v in ys[part]]}, f)
    with open(d / "test_batch", "wb") as f:
        pickle.dump({b"data": test[0].transpose(0, 3, 1, 2).reshape(len(test[0]), -1),
                     b"labels": [int(v) for v in test[1]]}, f)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CLASSES]}, f)


def _write_folders(root, train, test):
    for split, (xs, ys) in (("train", train), ("test", test)):
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            p = root / split / CLASSES[y] / f"{i:04d}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x).save(p)


def test_cifar_python_batches_and_image_folders_read_the_same_images(tmp_path):
    from lightning_sr.data.classify import load_cifar10

    train, test = _fake_cifar()
    _write_batches(tmp_path / "b", train, test)
    _write_folders(tmp_path / "f", train, test)
    a, b = load_cifar10(tmp_path / "b"), load_cifar10(tmp_path / "f")
    assert a["classes"] == b["classes"] == CLASSES
    for k in ("train", "test"):  # the folder layout lists files by class: compare as sorted (label, image) sets
        def rows(d, k=k):
            return sorted((int(y), x.numpy().tobytes()) for x, y in zip(*d[k], strict=True))
        assert rows(a) == rows(b) and len(rows(a)) == 10 and a[k][0].shape[1:] == (3, 32, 32)


def test_cifar_folder_missing_batch_files_names_them(tmp_path):
    from lightning_sr.data.classify import load_cifar10

    train, test = _fake_cifar()
    _write_batches(tmp_path, train, test)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"lacks data_batch_3") as e:
        load_cifar10(tmp_path)
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match=r"expected .*cifar-10-batches-py"):
        load_cifar10(tmp_path / "nothing_here")


def _independent_accuracy(gen: nn.Module, train_set, test_set) -> tuple[float, list[bool]]:
    """Top-1 accuracy (%) of ``gen`` on the test arrays, computed here from the raw arrays (normalised by the
    training images' per-channel mean and std, as the data module documents), and the per-image hits."""
    train_x = torch.from_numpy(train_set[0]).permute(0, 3, 1, 2).float().div(255)
    mean, std = train_x.mean(dim=(0, 2, 3)).view(-1, 1, 1), train_x.std(dim=(0, 2, 3)).clamp_min(1e-3).view(-1, 1, 1)
    test_x = (torch.from_numpy(test_set[0]).permute(0, 3, 1, 2).float().div(255) - mean) / std
    with torch.no_grad():
        pred = gen.eval()(test_x).argmax(1)
    right = (pred == torch.from_numpy(test_set[1])).tolist()
    return 100.0 * sum(right) / len(right), right


# LeNet5's two runs go to make test-matrix, whose classify row trains and evaluates LeNet5 normal and recycled too
LENET5 = pytest.mark.matrix


@pytest.mark.parametrize("model,conv", [pytest.param("lenet5", "normal", marks=LENET5),
                                        pytest.param("lenet5", "recycle", marks=LENET5), ("resnet18", "normal"),
                                        ("resnet18", "recycle")])
def test_classifier_end_to_end_train_then_evaluate_equals_an_independent_evaluation(model, conv, tmp_path):
    """train.py task=classify (normal and recycled LeNet5 and ResNet18) on CIFAR-10 batches, then evaluate.py on its
    last.ckpt: the accuracy of both equals last.ckpt's computed here from the raw arrays."""
    from tests.conftest import run_cli

    train_set, test_set = _fake_cifar(40, 20, seed=3)
    _write_batches(tmp_path / "cifar", train_set, test_set)
    data = [f"data.root={tmp_path / 'cifar'}", "data.num_workers=0", "data.pin_memory=false"]
    run_cli("train.py", ["task=classify", f"model={model}", f"model.conv={conv}", *data, "data.batch_size=8",
                         "data.eval_batch_size=20", "data.iters_per_epoch=5", "trainer=cpu", "trainer.max_steps=4",
                         "trainer.val_check_interval=2", "callbacks.progress_bar.refresh_rate=0", "logger=csv",
                         "cost.latency=false", "callbacks.model_summary=null", f"hydra.run.dir={tmp_path / 'train'}"])
    trained = json.loads((tmp_path / "train" / "metrics.json").read_text())
    ckpt = tmp_path / "train" / "checkpoints" / "last.ckpt"
    run_cli("evaluate.py", ["+task=classify", f"ckpt_path={ckpt}", *data, "progress_bar=false",
                            f"hydra.run.dir={tmp_path / 'eval'}"])
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    gen, spec = load_generator(ckpt)
    assert spec["arch"] == model and (spec.get("conv", "normal") == conv) and bool(recycled_layers(gen)) == (
        conv == "recycle")
    expected, _ = _independent_accuracy(gen, train_set, test_set)
    assert trained["global_step"] == 4 and trained["generator"] == evaluated["generator"]
    assert trained["accuracy"] == pytest.approx(expected, abs=1e-6)
    assert evaluated["accuracy"] == pytest.approx(expected, abs=1e-6)
    assert evaluated["sets"]["cifar10_test"]["images"] == 20 and evaluated["params"] == count_params(gen)


def test_recycled_lenet5_trains_on_cifar_batches_and_its_checkpoint_reloads(tmp_path):
    from lightning_sr.run import train

    train_set, test_set = _fake_cifar(40, 20)
    _write_batches(tmp_path / "cifar", train_set, test_set)
    out = tmp_path / "run"
    cfg = compose(["task=classify", "model=lenet5", "model.conv=recycle", "data.root=" + str(tmp_path / "cifar"),
                   "data.batch_size=8", "data.eval_batch_size=20", "data.iters_per_epoch=5", "data.num_workers=0",
                   "data.pin_memory=false", "trainer=cpu", "trainer.max_steps=6", "trainer.val_check_interval=3",
                   "callbacks.progress_bar.refresh_rate=0", "logger=csv", "cost.latency=false"], out)
    m = train(cfg)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["generator"]["conv"] == "recycle"
    gen, spec = load_generator(out / "checkpoints" / "last.ckpt")
    # the recorded top-1 accuracy is last.ckpt's on the 20 test images, computed here from the raw arrays
    expected, right = _independent_accuracy(gen, train_set, test_set)
    assert saved["accuracy"] == pytest.approx(expected, abs=1e-6) and m["accuracy"] == saved["accuracy"]
    # image by image too (balanced labels: any constant prediction scores 10 %, so the mean alone says little)
    import csv

    rows = list(csv.DictReader(open(out / "per_image.csv")))
    assert [float(r["accuracy"]) for r in sorted(rows, key=lambda r: int(r["image"]))] == [100.0 * r for r in right]
    assert recycled_layers(gen) == ["conv2"] and m["params"] == count_params(gen)
