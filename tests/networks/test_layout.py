"""The SR layout contract (networks/layout.py) and the architecture registry: every registered SR architecture has the
layout the transforms address, a network missing a part is one line naming it, every model config names a
registered architecture and every architecture module is imported by ``lightning_sr.networks``."""

import ast
from pathlib import Path

import pytest
from torch import nn

import lightning_sr.networks
from lightning_sr.errors import ConfigError
from lightning_sr.networks import ARCHS, build_generator
from lightning_sr.networks.layout import PARTS, SRLayout, check_layout, layout_of
from tests.conftest import compose

ROOT = Path(__file__).resolve().parents[2]
# registered architectures that are not SR networks with a layout (each with why); every other one must have it
NOT_SR_LAYOUT = {"bicubic": "an interpolation, no layers", "lenet5": "a classifier", "resnet18": "a classifier"}
SMALL = {"srresnet": {"res_blocks": 2, "channels": 8}, "multi_exit": {"res_blocks": 3, "exits": [1], "channels": 8},
         "frnet": {"res_blocks": 2, "channels": 8}}


def _spec(arch: str, **extra) -> dict:
    return {"arch": arch, **SMALL.get(arch, {}), **extra}


def sr_archs() -> list[str]:
    return sorted(set(ARCHS) - set(NOT_SR_LAYOUT))


@pytest.mark.parametrize("conv", ["normal", "recycle"])
@pytest.mark.parametrize("arch", sr_archs())
def test_every_registered_sr_arch_has_the_layout(arch, conv):
    gen = build_generator(_spec(arch, **({"conv": conv} if conv != "normal" else {})))
    owner = check_layout(gen)
    assert owner is layout_of(gen)
    assert isinstance(owner, SRLayout)
    assert isinstance(owner.body, nn.ModuleList) and len(owner.body) == SMALL[arch]["res_blocks"]
    assert all(getattr(owner, p) is not None for p in PARTS if p != "body_tail")
    names = dict(gen.named_modules())
    assert gen.default_protect and all(p in names for p in gen.default_protect)


def test_the_exempt_archs_are_registered_and_lack_the_layout():
    """The exemption list stays honest: each name is registered and really is not an SR layout."""
    for arch in NOT_SR_LAYOUT:
        assert arch in ARCHS
        with pytest.raises(ConfigError):
            check_layout(build_generator(_spec(arch)))


@pytest.mark.parametrize("part", PARTS[:2] + PARTS[3:])
def test_a_missing_part_is_one_line_naming_arch_and_part(part):
    gen = build_generator(_spec("srresnet"))
    delattr(gen, part)
    assert not isinstance(gen, SRLayout)
    with pytest.raises(ConfigError) as e:
        check_layout(gen, what="compression.block_prune")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("compression.block_prune needs the SR layout part")
    assert f"`{part}`" in msg and "model.arch='srresnet'" in msg and "use an architecture" in msg


def test_only_the_parts_asked_for_are_checked():
    gen = build_generator(_spec("srresnet"))
    del gen.upsampler
    check_layout(gen, need=("head", "body"))  # a transform that needs only the blocks
    with pytest.raises(ConfigError, match="`upsampler`"):
        check_layout(gen, need=("body", "upsampler"))
    with pytest.raises(ValueError, match="not a layout part"):
        check_layout(gen, need=("trunk",))


def test_a_body_that_is_not_a_module_list_is_one_line():
    gen = build_generator(_spec("frnet"))
    gen.srnet.body = nn.Sequential(*gen.srnet.body)
    with pytest.raises(ConfigError) as e:
        check_layout(gen)
    assert "\n" not in str(e.value)
    assert "nn.ModuleList" in str(e.value) and "model.arch='frnet'" in str(e.value) and "'srnet'" in str(e.value)


def test_default_protect_must_name_modules_of_the_network(monkeypatch):
    gen = build_generator(_spec("frnet"))
    monkeypatch.setattr(type(gen), "default_protect", ("fnet", "srnet.nope"))
    with pytest.raises(ConfigError, match=r"default_protect.*\['srnet.nope'\]"):
        check_layout(gen)
    check_layout(gen, need=("body",))  # the protection is only checked when asked for


def _transforms():
    """Every transform entry point that addresses the layout, with the key its one line starts with."""
    from lightning_sr.transforms.blocks import l1_scores, output_delta_scores, prune_blocks
    from lightning_sr.transforms.channels import find_groups, prune_channels

    return {"prune_blocks": (lambda g: prune_blocks(g, [0]), "compression.block_prune"),
            "l1_scores": (l1_scores, "compression.block_prune"),
            "output_delta_scores": (lambda g: output_delta_scores(g, None),
                                    "compression.block_prune.criterion=output_delta"),
            "prune_channels": (lambda g: prune_channels(g, 0.5), "compression.channel_prune"),
            "find_groups": (lambda g: find_groups(g, None), "compression.channel_sparsity")}


@pytest.mark.parametrize("transform", sorted(_transforms()))
@pytest.mark.parametrize("arch", ["srresnet", "frnet"])
def test_a_transform_on_a_network_lacking_a_part_is_check_layouts_one_line(transform, arch):
    """The transforms find the blocks, stages and protection through check_layout, not their own probes: a network
    without the part (here ``body``, in the network or its blocks_owner) gets the layout's one line, and nothing
    was changed."""
    fn, key = _transforms()[transform]
    gen = build_generator(_spec(arch))
    del layout_of(gen).body
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    with pytest.raises(ConfigError) as e:
        fn(gen)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{key} needs the SR layout part `body`") and f"model.arch={arch!r}" in msg
    assert gen.state_dict().keys() == before.keys()


@pytest.mark.parametrize("transform", ["prune_channels", "find_groups"])
def test_channel_transforms_take_the_default_protection_from_the_layout(transform, monkeypatch):
    """No silent [head, tail] fallback: a network without ``default_protect`` is refused (one line) unless the
    protection is given; with it given the transform runs."""
    from lightning_sr.networks.srresnet import SRResNet
    from lightning_sr.transforms.channels import find_groups, prune_channels

    monkeypatch.delattr(SRResNet, "default_protect")
    fn, key = _transforms()[transform]
    with pytest.raises(ConfigError) as e:
        fn(build_generator(_spec("srresnet")))
    assert "\n" not in str(e.value)
    assert str(e.value).startswith(f"{key} needs the SR layout's default_protect")
    gen = build_generator(_spec("srresnet"))
    if transform == "prune_channels":
        prune_channels(gen, 0.5, protect=["head", "tail"])
        assert gen.body[0].conv1.out_channels == 4
    else:
        assert find_groups(gen, ["tail"])


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml")))
def test_every_model_config_names_a_registered_arch(name, tmp_path):
    """``model=<name>`` as Hydra composes it (defaults included: srgan.yaml inherits srresnet's arch)."""
    arch = compose([f"model={name}"], tmp_path).model.get("arch")
    assert arch in ARCHS, f"conf/model/{name}.yaml: arch={arch!r} is not registered (known: {sorted(ARCHS)})"


def test_every_architecture_module_is_imported_by_the_package():
    """A module that registers an architecture (``@register(...)``) but is not imported by lightning_sr.networks
    would leave its arch unknown to configs and checkpoints."""
    folder = Path(lightning_sr.networks.__file__).parent
    registering = []
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "register"
                    and path.stem != "registry"):
                registering.append(path.stem)
                break
    assert {"srresnet", "multi_exit", "video", "bicubic", "classify"} <= set(registering)
    imported = set()
    for node in ast.walk(ast.parse((folder / "__init__.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "lightning_sr.networks":
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lightning_sr.networks."):
            imported.add(node.module.rsplit(".", 1)[1])
    missing = [m for m in registering if m not in imported]
    assert not missing, f"lightning_sr/networks/__init__.py does not import {missing}"
