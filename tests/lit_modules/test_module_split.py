"""The LightningModule layers (lit_modules/): the task-agnostic base, the evaluation loop and SR path, the GAN mixin.
Real modules, no Trainer: what each layer gives and that no block of code is repeated between the module files."""

from pathlib import Path

import pytest

import lightning_sr.lit_modules
from lightning_sr.lit_modules import ClassifyModule, SRBaseModule, SRGANModule, TaskModule, VideoSRModule
from lightning_sr.lit_modules.evaluation import EvaluationLoop, SREvaluation
from lightning_sr.lit_modules.gan import GANMixin

SR_SPEC = {"arch": "srresnet", "res_blocks": 1, "channels": 8, "scale": 2, "norm": "none"}
VIDEO_SPEC = {"arch": "frnet", "res_blocks": 1, "channels": 8, "scale": 4}


def test_classify_is_a_task_module_without_the_sr_path():
    assert issubclass(ClassifyModule, TaskModule) and issubclass(ClassifyModule, EvaluationLoop)
    assert not issubclass(ClassifyModule, SREvaluation) and not issubclass(ClassifyModule, SRBaseModule)
    m = ClassifyModule({"arch": "lenet5", "num_classes": 10})
    assert not hasattr(m, "_ensure_bicubic") and not hasattr(m, "image_metrics")
    assert m.bicubic_results == {}  # metrics.json reads it for every task


@pytest.mark.parametrize("cls, spec, kwargs, frozen, steps", [
    (SRGANModule, SR_SPEC, {"perceptual": {"pretrained": False}, "patch_size": 16}, "perceptual", 2),
    (VideoSRModule, VIDEO_SPEC, {"feature": {"weight": 0.2, "pretrained": False}, "gan": {"weight": 0.01},
                                 "patch_size": 32}, "feature_loss", 2),
    (VideoSRModule, VIDEO_SPEC, {"feature": {"weight": 0.2, "pretrained": False}}, "feature_loss", 1),
])
def test_gan_mixin_keeps_frozen_vgg_out_of_checkpoints(cls, spec, kwargs, frozen, steps):
    m = cls(spec, spec["scale"], **kwargs)
    assert isinstance(m, GANMixin) and not m.automatic_optimization
    assert m.optimizer_steps_per_batch == steps  # 1: FRVSR (no discriminator)
    full = m.state_dict()
    assert any(k.startswith(f"{frozen}.") for k in full)
    ckpt = {"state_dict": dict(full)}
    m.on_save_checkpoint(ckpt)
    assert not any(k.startswith(f"{frozen}.") for k in ckpt["state_dict"])
    assert ckpt["lsr_arch"]["arch"] == spec["arch"]
    m.on_load_checkpoint(ckpt)
    assert set(ckpt["state_dict"]) == set(full)
    m.load_state_dict(ckpt["state_dict"])  # strict


def test_no_block_of_six_lines_is_repeated_between_module_files():
    folder = Path(lightning_sr.lit_modules.__file__).parent
    seen: dict[str, tuple[str, int]] = {}
    repeated = []
    for path in sorted(folder.glob("*.py")):
        lines = [line.strip() for line in path.read_text().splitlines()]
        for i in range(len(lines) - 5):
            window = lines[i:i + 6]
            if any(line in ("", ")", "]", "}") or line.startswith("#") for line in window):
                continue
            key = "\n".join(window)
            first = seen.setdefault(key, (path.name, i))
            if first[0] != path.name or i - first[1] >= 6:
                repeated.append(f"{first[0]}:{first[1] + 1} and {path.name}:{i + 1}: {window[0]}")
    assert not repeated, repeated
