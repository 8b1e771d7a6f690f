"""The part every LightningModule shares: generator, the one evaluation path, the loss hook, step accounting.

**Evaluation.** Validation and test run whole images (optionally in overlapping tiles) of every named set,
one dataloader per set, through :meth:`SRBaseModule.eval_outputs` (fp32, autocast off, every named output of
the generator: one for a plain model, one per exit for a multi-exit network) and
:meth:`SRBaseModule.image_metrics` (PSNR/SSIM, LPIPS when enabled). Per-image values go into a torchmetrics
:class:`~lightning_sr.metrics.EvalRecords`, which torchmetrics gathers across DDP ranks, so the numbers
equal a single-process run. Compression callbacks and the bicubic baseline use the same two functions
through :meth:`SRBaseModule.evaluate_datasets` (every image, on every rank, no sharding).

**Losses.** A module's training loss is a dict of named terms passed to :meth:`SRBaseModule.compose_loss`,
which adds the terms of every callback that has a ``loss_terms(trainer, pl_module, stage, **context)`` method
(distillation, sparsity), logs each term as ``train/<name>`` and returns the sum. Every module calls it,
SRGAN's manual optimisation included.

**Steps.** ``trainer.global_step`` counts optimiser steps (SRGAN makes two per batch). The data stream
follows :meth:`SRBaseModule.batches_done` and LR schedules last :meth:`SRBaseModule.schedule_length`
scheduler steps, so both end where ``trainer.max_steps`` ends and a resumed run replays exactly.
"""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from lightning_sr.checkpoint import ARCH_KEY, CONFIG_KEY, load_generator
from lightning_sr.inference import sr_outputs, to_uint8
from lightning_sr.metrics import METRIC_MODES, EvalRecords, build_lpips, psnr, ssim
from lightning_sr.models import build_generator, named_outputs, output_names
from lightning_sr.ops.image_io import write_rgb
from lightning_sr.ops.imresize import bicubic_upscale

log = logging.getLogger(__name__)

MODEL, BICUBIC = "model", "bicubic"


def metric_key(set_name: str, exit_name: str, metric: str, prefix: str = "val") -> str:
    return "/".join(p for p in (prefix, set_name, exit_name, metric) if p)


_to_uint8 = to_uint8  # the one 8-bit rounding (lightning_sr.inference), shared with lsr-upscale


def _index(item: dict[str, Any]) -> int:
    return int(torch.as_tensor(item["index"]).flatten()[0])


def _to_device(item: dict[str, Any], device) -> dict[str, Any]:
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in item.items()}


def aggregate(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """{set: {output: {metric: mean over images, "images": n}}} of per-image records."""
    acc: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in records:
        for m in METRIC_MODES:
            if m in r:
                acc[r["set"]][r["exit"]][m].append(r[m])
    return {s: {e: {**{m: float(np.mean(v)) for m, v in ms.items()}, "images": len(next(iter(ms.values())))}
                for e, ms in ex.items()} for s, ex in acc.items()}


class CosineLR(torch.optim.lr_scheduler.CosineAnnealingLR):
    """Cosine annealing that leaves parameter groups with learning rate 0 at 0 (parameters a callback optimises)."""

    def get_lr(self):
        return [0.0 if base == 0 else lr for base, lr in zip(self.base_lrs, super().get_lr(), strict=True)]


class SRBaseModule(L.LightningModule):
    # optimiser steps per training batch (trainer.global_step advances by this much per batch)
    optimizer_steps_per_batch = 1

    def __init__(self, generator_spec: dict[str, Any], scale: int, optim: dict | None = None,
                 scheduler: dict | None = None, val: dict | None = None, metrics: dict | None = None,
                 cost: dict | None = None, init_from: str | None = None, channels_last: bool = False,
                 save_outputs: bool = False, **kwargs: Any):
        super().__init__()
        self.save_hyperparameters()
        self.scale = int(scale)
        self.optim_cfg = dict(optim or {})
        self.sched_cfg = dict(scheduler or {})
        self.val_cfg = dict(val or {})
        self.metrics_cfg = dict(metrics or {})
        self.cost_cfg = dict(cost or {})
        self.channels_last = channels_last
        self.save_outputs = bool(save_outputs)  # test/evaluate: write the SR images scored to <run>/outputs/
        if init_from:
            self.generator, spec = load_generator(init_from, expect_arch=generator_spec.get("arch"),
                                                  expect_scale=self.scale, what="model.init_from")
            log.info("generator initialised from %s (architecture taken from the checkpoint: %s)", init_from, spec)
        else:
            self.generator, spec = build_generator(generator_spec), dict(generator_spec)
        self.generator_spec = spec
        # LPIPS is a metric, not part of the model: kept out of the state dict and parameter count.
        self._lpips = [build_lpips(self.metrics_cfg.get("lpips"))]
        self.records = EvalRecords()
        self.val_results: dict[str, Any] = {}
        self.val_records: list[dict[str, Any]] = []
        self.bicubic_results: dict[str, Any] = {}
        self.run_config: dict[str, Any] | None = None  # the run's flat config, stored in checkpoints (resume check)

    # ----- model ------------------------------------------------------------------------------------------
    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.generator(lr)

    def predict_outputs(self, lr: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named outputs to evaluate (:func:`lightning_sr.models.named_outputs`): ``""`` is the main output."""
        return named_outputs(self.generator, lr)

    def on_fit_start(self) -> None:
        if self.channels_last:
            self.generator.to(memory_format=torch.channels_last)

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[ARCH_KEY] = dict(self.generator_spec)
        if self.run_config is not None:
            checkpoint[CONFIG_KEY] = dict(self.run_config)

    # ----- steps ------------------------------------------------------------------------------------------
    def batches_done(self) -> int:
        """Training batches completed (the data stream's position), whatever the optimiser steps per batch."""
        t = self.trainer
        return int(t.global_step) * max(1, int(t.accumulate_grad_batches or 1)) // self.optimizer_steps_per_batch

    def schedule_length(self) -> int:
        """Scheduler steps in the whole run: schedules end exactly at ``trainer.max_steps``."""
        t = self.trainer
        steps = t.max_steps if t.max_steps and t.max_steps > 0 else int(t.estimated_stepping_batches)
        return max(1, int(steps) // self.optimizer_steps_per_batch)

    def on_train_start(self) -> None:
        n = self.schedule_length()
        for sc in self.trainer.lr_scheduler_configs:  # trainer.max_steps changed on resume: re-stretch the cosine
            s = sc.scheduler
            if isinstance(s, torch.optim.lr_scheduler.CosineAnnealingLR) and s.T_max != n:
                log.warning("cosine schedule: %d -> %d steps (trainer.max_steps changed since the checkpoint)",
                            s.T_max, n)
                s.T_max = n

    # ----- optimisation (shared helpers) -----------------------------------------------------------------------
    def generator_parameters(self) -> list[torch.nn.Parameter]:
        """The generator's trainable parameters for the module's optimiser."""
        return [p for p in self.generator.parameters() if p.requires_grad]

    def make_optimizer(self, params, cfg: dict | None = None) -> torch.optim.Optimizer:
        """Adam over ``params``. Parameters a callback optimises itself (marked ``lsr_own_optimizer``: channel gates)
        sit in a group of their own with learning rate 0: this optimiser never changes them, but they stay in it, so
        modules that toggle optimisers (GANs) keep computing their gradients."""
        c = {**self.optim_cfg, **(cfg or {})}
        params = list(params)
        own = [p for p in params if getattr(p, "lsr_own_optimizer", False)]
        groups: list[dict] = [{"params": [p for p in params if not getattr(p, "lsr_own_optimizer", False)]}]
        if own:
            groups.append({"params": own, "lr": 0.0, "weight_decay": 0.0})
        return torch.optim.Adam(groups, lr=c.get("lr", 2e-4), betas=tuple(c.get("betas", (0.9, 0.99))),
                                weight_decay=c.get("weight_decay", 0.0))

    def make_scheduler(self, opt: torch.optim.Optimizer):
        c = self.sched_cfg
        name = c.get("name", "constant")
        if name == "cosine":
            return CosineLR(opt, T_max=self.schedule_length(), eta_min=c.get("eta_min", 1e-7))
        if name == "multistep":
            return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(c.get("milestones", [])),
                                                        gamma=c.get("gamma", 0.5))
        if name == "constant":
            return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
        from lightning_sr.errors import ConfigError

        raise ConfigError(f"model.scheduler.name={name!r}: use cosine, multistep or constant")

    # ----- losses -------------------------------------------------------------------------------------------
    def compose_loss(self, terms: dict[str, torch.Tensor], stage: str = "generator", **context: Any) -> torch.Tensor:
        """Sum of the module's named loss ``terms`` and those of every callback with a ``loss_terms`` method
        (``stage``: which network is being optimised; ``context``: lr, hr, outputs...). Logs every term."""
        trainer = self._trainer
        terms = dict(terms)
        if trainer is not None:
            for cb in trainer.callbacks:
                add = getattr(cb, "loss_terms", None)
                if not callable(add):
                    continue
                extra = add(trainer, self, stage=stage, **context) or {}
                clash = sorted(set(extra) & set(terms))
                if clash:
                    raise RuntimeError(f"{type(cb).__name__} adds loss terms {clash} that the module already has")
                terms.update(extra)
        total = torch.stack([t.float() for t in terms.values()]).sum()
        if trainer is not None:
            prefix = "train" if stage == "generator" else f"train/{stage}"
            self.log_dict({f"{prefix}/{k}": v.detach().float() for k, v in terms.items()})
            self.log(f"{prefix}/loss", total.detach(), prog_bar=stage == "generator")
        return total

    # ----- the evaluation path -------------------------------------------------------------------------------
    @torch.no_grad()
    def eval_outputs(self, lr: torch.Tensor, fn=None) -> dict[str, torch.Tensor]:
        """Every named output for an LR image, in fp32 with autocast off (bf16-mixed training validates exactly
        like ``evaluate.py``), whole or in ``val.tile`` tiles. ``fn``: another LR -> outputs function."""
        return sr_outputs(fn or self.predict_outputs, self._prep(lr.float()), self.scale,
                          int(self.val_cfg.get("tile", 0) or 0), int(self.val_cfg.get("tile_overlap", 16)))

    def image_metrics(self, sr: torch.Tensor, hr: torch.Tensor) -> dict[str, float]:
        crop = int(self.metrics_cfg.get("crop_border", self.scale))
        y = bool(self.metrics_cfg.get("y_channel", True))
        out = {"psnr": float(psnr(sr, hr, crop, y)[0]), "ssim": float(ssim(sr, hr, crop, y)[0])}
        lp = self._lpips[0]
        if lp is not None:
            lp.to(sr.device)
            q = lambda t: (t.clamp(0, 1) * 255).round() / 255  # noqa: E731  (8-bit, like PSNR/SSIM)
            out["lpips"] = float(lp(q(sr), q(hr))[0])
        return out

    @torch.no_grad()
    def item_records(self, item: dict[str, Any], fn=None, panels: bool = False
                     ) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
        """Per-output metric records of one evaluation item (an image: one record per output) and, when asked, the
        sample panels to save (LR | SR | HR per output). ``fn``: another LR -> outputs function (bicubic)."""
        outs = self.eval_outputs(item["lr"], fn)
        hr = item["hr"].float().to(item["lr"].device)
        idx = _index(item)
        records = [{"exit": name, "index": idx, **self.image_metrics(sr, hr)} for name, sr in outs.items()]
        if self.save_outputs and fn is None and "set" in item:
            self._write_outputs(item, outs)
        shown: dict[str, np.ndarray] = {}
        if panels:
            up = F.interpolate(item["lr"].float(), scale_factor=self.scale, mode="nearest")
            for name, sr in outs.items():
                shown["_" + name if name else ""] = _to_uint8(torch.cat([up[0], sr[0].float(), hr[0]], dim=-1))
        return records, shown

    def _write_outputs(self, item: dict[str, Any], outs: dict[str, torch.Tensor]) -> None:
        """``evaluate.py save_outputs=true``: the 8-bit SR images scored, ``<run>/outputs/<set>[_<exit>]/<image>.png``
        (what ``lsr-upscale`` writes for the same LR image)."""
        name = item.get("name", _index(item))
        name = name[0] if isinstance(name, (list, tuple)) else name
        root = Path(self.trainer.default_root_dir) / "outputs"
        for out_name, sr in outs.items():
            write_rgb(root / (item["set"] + (f"_{out_name}" if out_name else "")) / f"{name}.png", to_uint8(sr[0]))

    def dataset_item(self, ds, i: int) -> dict[str, Any]:
        """Item ``i`` of an evaluation dataset as its dataloader yields it (a batch of one image)."""
        item = ds[i]
        return {**item, "lr": item["lr"].unsqueeze(0), "hr": item["hr"].unsqueeze(0)}

    def aggregate_records(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return aggregate(records)

    @torch.no_grad()
    def evaluate_datasets(self, datasets, fn=None, max_images: int | None = None) -> dict[str, Any]:
        """{set: {output: {metric: mean, "images": n}}} over every item of ``datasets`` (this process, no
        sharding: every DDP rank gets the same numbers). ``fn``: LR -> outputs (default: the generator's)."""
        device = next((p.device for p in self.generator.parameters()), self.device)
        was_training = self.generator.training
        self.generator.eval()
        records = []
        try:
            for ds in datasets:
                for i in range(len(ds) if max_images is None else min(max_images, len(ds))):
                    item = _to_device(self.dataset_item(ds, i), device)
                    recs, _ = self.item_records(item, fn)
                    records += [{"set": ds.name, "image": ds.item_name(r["index"]), **r} for r in recs]
        finally:
            self.generator.train(was_training)
        return self.aggregate_records(records)

    def _bicubic_outputs(self, lr: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"": bicubic_upscale(lr, self.scale)}

    def _datamodule(self):
        return self.trainer.datamodule if self._trainer is not None else None

    def _ensure_bicubic(self) -> None:
        """The bicubic baseline, once, on every image of every evaluation set (whatever the trainer settings)."""
        dm = self._datamodule()
        if self.bicubic_results or dm is None or not hasattr(dm, "sets") or self._is_bicubic():
            return  # the bicubic model's own results are the baseline (_eval_epoch_end)
        res = self.evaluate_datasets(dm.sets("test"), fn=self._bicubic_outputs)
        self.bicubic_results = {s: ex[""] for s, ex in res.items()}

    def _is_bicubic(self) -> bool:
        return self.generator_spec.get("arch") == "bicubic"

    def _sync_buffers(self) -> None:
        """Under DDP, every rank validates with rank 0's buffers (BatchNorm statistics): the ones its checkpoint
        holds, so distributed metrics equal a single-process evaluation of that checkpoint."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            for b in self.generator.buffers():
                dist.broadcast(b, src=0)

    def _stage_names(self, stage: str) -> list[str]:
        dm = self._datamodule()
        return dm.set_names(stage) if dm is not None and hasattr(dm, "set_names") else []

    def _eval_step(self, batch: dict[str, Any], dataloader_idx: int, stage: str) -> None:
        names = self._stage_names(stage)
        set_name = names[dataloader_idx] if dataloader_idx < len(names) else f"set{dataloader_idx}"
        want = _index(batch) == 0 and self.global_rank == 0 and not getattr(self.trainer, "sanity_checking", False)
        records, panels = self.item_records({**batch, "set": set_name}, panels=want)
        all_sets, all_outputs = self._datamodule().eval_names, output_names(self.generator)
        for r in records:
            self.records.update(all_sets.index(set_name), all_outputs.index(r["exit"]), r["index"], r)
        for tag, panel in panels.items():
            self._save_panel(f"{set_name}{tag}", panel)

    def on_validation_start(self) -> None:
        self._sync_buffers()
        self._ensure_bicubic()

    def on_test_start(self) -> None:
        self._sync_buffers()
        self._ensure_bicubic()

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        self._eval_step(batch, dataloader_idx, "val")

    def test_step(self, batch, batch_idx, dataloader_idx: int = 0):
        self._eval_step(batch, dataloader_idx, "test")

    def _save_panel(self, tag: str, panel: np.ndarray) -> None:
        """A sample panel (LR | SR | HR) to ``<run>/samples/<tag>/`` and to every logger that takes images."""
        path = Path(self.trainer.default_root_dir) / "samples" / tag / f"step{self.global_step:07d}.png"
        write_rgb(path, panel)
        for lg in self.loggers:
            if hasattr(lg, "log_image"):
                try:
                    lg.log_image(key=f"samples/{tag}", images=[panel], caption=["LR | SR | HR"], step=self.global_step)
                except Exception as e:  # a logger hiccup never stops training
                    log.warning("could not log sample image to %s: %s", type(lg).__name__, e)

    def _gathered_records(self) -> list[dict[str, Any]]:
        """Every rank's per-image records (torchmetrics sync), with set, output and image names."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "compute called before update" on a rank without images
            rows = self.records.compute()
        self.records.reset()
        dm = self._datamodule()
        sets, outputs = dm.eval_names, output_names(self.generator)
        out = []
        for r in rows:
            ds = dm.eval_sets[r["set"]]
            rec = {"set": sets[r["set"]], "exit": outputs[r["output"]], "index": r["index"],
                   "image": ds.item_name(r["index"])}
            rec.update({m: r[m] for m in METRIC_MODES if m in r})
            out.append(rec)
        return out

    def _eval_epoch_end(self, prefix: str) -> None:
        records = self._gathered_records()
        results = self.aggregate_records(records)
        self.val_results, self.val_records = results, records
        if self._is_bicubic():
            self.bicubic_results = {s: ex[""] for s, ex in results.items() if "" in ex}
        if self.trainer is not None and getattr(self.trainer, "sanity_checking", False):
            return
        logged: dict[str, float] = {}
        for set_name, exits in results.items():
            for exit_name, ms in exits.items():
                if not isinstance(ms, dict):
                    continue
                for m in METRIC_MODES:
                    if m in ms:
                        logged[metric_key(set_name, exit_name, m, prefix)] = ms[m]
        for m in METRIC_MODES:  # the headline numbers: mean over sets of the main output
            vals = [ex[""][m] for ex in results.values() if isinstance(ex.get(""), dict) and m in ex[""]]
            if vals:
                logged[f"{prefix}/{m}"] = float(np.mean(vals))
        for k, v in logged.items():
            self.log(k, v, sync_dist=False, add_dataloader_idx=False, prog_bar=k == f"{prefix}/psnr")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")
