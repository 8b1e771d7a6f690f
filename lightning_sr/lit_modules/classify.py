"""Image classification (``model.module=classify``): the Weight Recycle paper's CIFAR-10 table on the same trainer,
loggers, checkpoints, sweeps and report as the SR models.

The module is a :class:`~lightning_sr.lit_modules.base.TaskModule` (the network, built from its spec, ``model.init_from``,
checkpoints that rebuild it; Adam and the LR schedules, step accounting, the loss hook ``compose_loss``) with the
task-agnostic :class:`~lightning_sr.lit_modules.evaluation.EvaluationLoop`. What it defines is the evaluation of one
item: :meth:`ClassifyModule.item_records` gives one record per image with ``accuracy`` (100 if the arg-max class is
the label, else 0), so the loop averages them into the top-1 accuracy in percent per set
(``val/<set>/accuracy``, headline ``val/accuracy``, metrics.json ``accuracy``), gathered over DDP ranks like the
SR metrics. There is no baseline (no SR evaluation path, no bicubic). The cost (params, MACs, latency) is measured on the data's image size
(3x32x32 for CIFAR-10), whatever ``cost.input_size`` says.

Loss: cross-entropy (``model.label_smoothing``, 0 by default, as in the paper).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from lightning_sr.errors import ConfigError, require
from lightning_sr.lit_modules.base import TaskModule
from lightning_sr.lit_modules.evaluation import EvaluationLoop
from lightning_sr.networks import named_outputs

LOSSES = ("cross_entropy",)


class ClassifyModule(EvaluationLoop, TaskModule):
    task = "classify"

    def __init__(self, generator_spec: dict[str, Any], scale: int = 1, loss: str = "cross_entropy",
                 label_smoothing: float = 0.0, **kwargs: Any):
        self.check_config({"loss": loss, "label_smoothing": label_smoothing})
        super().__init__(generator_spec, scale, loss=loss, label_smoothing=label_smoothing, **kwargs)
        self.label_smoothing = float(label_smoothing)

    @staticmethod
    def check_config(model_cfg: dict[str, Any]) -> None:
        loss = model_cfg.get("loss", "cross_entropy")
        require(loss in LOSSES, f"model.loss={loss!r} is not supported by model.module=classify; use one of "
                                f"{', '.join(LOSSES)}")
        ls = model_cfg.get("label_smoothing", 0.0)
        require(isinstance(ls, (int, float)) and 0 <= ls < 1,
                f"model.label_smoothing={ls} is impossible; use 0 <= label_smoothing < 1")

    def setup(self, stage: str) -> None:
        dm = self._datamodule()
        if dm is None or not hasattr(dm, "num_classes"):
            raise ConfigError("model.module=classify needs a classification datamodule; use data=cifar10")
        dm.setup(stage)
        want = int(self.generator_spec.get("num_classes", 10))
        require(dm.num_classes == want, f"model.num_classes={want} but the data has {dm.num_classes} classes "
                                        f"({', '.join(dm.classes[:12])}); set model.num_classes={dm.num_classes}")
        self.cost_cfg = {**self.cost_cfg, "input_size": list(dm.image_shape)}  # MACs/latency on the data's images

    # ----- training ---------------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        x, y = self._prep(batch["image"]), batch["label"]
        logits = self(x)
        with torch.no_grad():
            self.log("train/accuracy", (logits.argmax(1) == y).float().mean() * 100)
        ce = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        return self.compose_loss({"ce": ce}, images=x, labels=y, outputs={"": logits})

    def configure_optimizers(self):
        opt = self.make_optimizer(self.generator_parameters())
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self.make_scheduler(opt), "interval": "step"}}

    # ----- evaluation (one item: a batch of images) ------------------------------------------------------------
    def dataset_item(self, ds, i: int) -> dict[str, Any]:
        item = ds[i]
        return {"image": item["image"].unsqueeze(0), "label": torch.as_tensor([item["label"]]), "index": i}

    @torch.no_grad()
    def item_records(self, item: dict[str, Any], fn=None, panels: bool = False
                     ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """One record per image of the item (a batch): ``accuracy`` 100 (right) or 0 (wrong), per output."""
        x = self._prep(item["image"].float())
        with torch.autocast(device_type=x.device.type, enabled=False):
            outs = (fn or (lambda t: named_outputs(self.generator, t)))(x)
        labels = torch.as_tensor(item["label"]).view(-1).to(x.device)
        index = torch.as_tensor(item["index"]).view(-1).tolist()
        records = []
        for name, logits in outs.items():
            right = (logits.argmax(1) == labels).tolist()
            records += [{"exit": name, "index": int(i), "accuracy": 100.0 if r else 0.0}
                        for i, r in zip(index, right, strict=True)]
        return records, {}
