"""The part every LightningModule shares: generator, validation on named sets, metrics, samples.

Validation works on whole images (optionally in overlapping tiles), one dataloader per named
set, and computes per-image PSNR/SSIM (and LPIPS when enabled) for every output the model
exposes through :meth:`predict_outputs` (one for a plain generator, one per exit for a
multi-exit network). Per-image records are gathered across DDP ranks and de-duplicated by
(set, exit, image index), so padded samples from a distributed sampler never count twice and
the numbers equal a single-process run.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from lightning_sr.checkpoint import ARCH_KEY, load_generator
from lightning_sr.data.imresize import bicubic_upscale
from lightning_sr.data.io import write_rgb
from lightning_sr.metrics import METRIC_MODES, build_lpips, psnr, ssim
from lightning_sr.models import build_generator, tiled_forward

log = logging.getLogger(__name__)



def metric_key(set_name: str, exit_name: str, metric: str, prefix: str = "val") -> str:
    return "/".join(p for p in (prefix, set_name, exit_name, metric) if p)


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    return (img.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


class SRBaseModule(L.LightningModule):
    def __init__(self, generator_spec: dict[str, Any], scale: int, optim: dict | None = None,
                 scheduler: dict | None = None, val: dict | None = None, metrics: dict | None = None,
                 init_from: str | None = None, channels_last: bool = False, **kwargs: Any):
        super().__init__()
        self.save_hyperparameters()
        self.scale = int(scale)
        self.optim_cfg = dict(optim or {})
        self.sched_cfg = dict(scheduler or {})
        self.val_cfg = dict(val or {})
        self.metrics_cfg = dict(metrics or {})
        self.channels_last = channels_last
        if init_from:
            self.generator, spec = load_generator(init_from, expect_arch=generator_spec.get("arch"),
                                                  expect_scale=self.scale, what="model.init_from")
            log.info("generator initialised from %s (architecture taken from the checkpoint: %s)", init_from, spec)
        else:
            self.generator, spec = build_generator(generator_spec), dict(generator_spec)
        self.generator_spec = spec
        # LPIPS is a metric, not part of the model: kept out of the state dict and parameter count.
        self._lpips = [build_lpips(self.metrics_cfg.get("lpips"))]
        self.eval_names: list[str] = []
        self._records: list[dict[str, Any]] = []
        self.val_results: dict[str, Any] = {}
        self.val_records: list[dict[str, Any]] = []
        self.bicubic_results: dict[str, Any] = {}

    # ----- model ------------------------------------------------------------------------------------------
    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.generator(lr)

    def predict_outputs(self, lr: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named outputs to evaluate: "" is the model's main output; a multi-exit generator adds its
        shallower exits (``exit8``...), so training and ``evaluate.py`` report every exit."""
        g = self.generator
        if hasattr(g, "forward_exits"):
            outs = g.forward_exits(lr)
            return {"": outs.pop(g.deepest), **outs}
        return {"": self(lr)}

    def on_fit_start(self) -> None:
        if self.channels_last:
            self.generator.to(memory_format=torch.channels_last)

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[ARCH_KEY] = dict(self.generator_spec)

    # ----- optimisation (shared helpers) -----------------------------------------------------------------------
    def make_optimizer(self, params, cfg: dict | None = None) -> torch.optim.Optimizer:
        c = {**self.optim_cfg, **(cfg or {})}
        return torch.optim.Adam(params, lr=c.get("lr", 2e-4), betas=tuple(c.get("betas", (0.9, 0.99))),
                                weight_decay=c.get("weight_decay", 0.0))

    def make_scheduler(self, opt: torch.optim.Optimizer):
        c = self.sched_cfg
        name = c.get("name", "constant")
        total = self.trainer.max_steps if self.trainer.max_steps and self.trainer.max_steps > 0 else int(
            self.trainer.estimated_stepping_batches)
        if name == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total), eta_min=c.get("eta_min", 1e-7))
        elif name == "multistep":
            sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(c.get("milestones", [])),
                                                         gamma=c.get("gamma", 0.5))
        elif name == "constant":
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
        else:
            from lightning_sr.errors import ConfigError

            raise ConfigError(f"model.scheduler.name={name!r}: use cosine, multistep or constant")
        return sched

    # ----- validation ---------------------------------------------------------------------------------------
    def _set_name(self, dataloader_idx: int) -> str:
        if not self.eval_names and self.trainer is not None and self.trainer.datamodule is not None:
            self.eval_names = list(self.trainer.datamodule.eval_names)
        return self.eval_names[dataloader_idx] if dataloader_idx < len(self.eval_names) else f"set{dataloader_idx}"

    def _image_metrics(self, sr: torch.Tensor, hr: torch.Tensor) -> dict[str, float]:
        crop = int(self.metrics_cfg.get("crop_border", self.scale))
        y = bool(self.metrics_cfg.get("y_channel", True))
        out = {"psnr": float(psnr(sr, hr, crop, y)[0]), "ssim": float(ssim(sr, hr, crop, y)[0])}
        lp = self._lpips[0]
        if lp is not None:
            lp.to(sr.device)
            q = lambda t: (t.clamp(0, 1) * 255).round() / 255  # noqa: E731  (8-bit, like PSNR/SSIM)
            out["lpips"] = float(lp(q(sr), q(hr))[0])
        return out

    def _eval_step(self, batch: dict[str, Any], dataloader_idx: int) -> None:
        set_name = self._set_name(dataloader_idx)
        lr, hr = self._prep(batch["lr"]), batch["hr"]
        idx, name = int(batch["index"][0]), batch["name"][0]
        outs = tiled_forward(self.predict_outputs, lr, self.scale, int(self.val_cfg.get("tile", 0) or 0),
                             int(self.val_cfg.get("tile_overlap", 16)))
        for exit_name, sr in outs.items():
            rec = {"kind": "model", "set": set_name, "exit": exit_name, "index": idx, "image": name}
            rec.update(self._image_metrics(sr, hr))
            self._records.append(rec)
        if not self.bicubic_results.get(set_name):
            bic = bicubic_upscale(batch["lr"], self.scale)
            rec = {"kind": "bicubic", "set": set_name, "exit": "", "index": idx, "image": name}
            rec.update(self._image_metrics(bic, hr))
            self._records.append(rec)
        if idx == 0 and self.global_rank == 0:
            self._save_samples(set_name, batch["lr"], outs, hr)

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        self._eval_step(batch, dataloader_idx)

    def test_step(self, batch, batch_idx, dataloader_idx: int = 0):
        self._eval_step(batch, dataloader_idx)

    def _save_samples(self, set_name: str, lr, outs: dict[str, torch.Tensor], hr) -> None:
        if self.trainer is None or getattr(self.trainer, "sanity_checking", False):
            return
        up = F.interpolate(lr.float(), scale_factor=self.scale, mode="nearest")
        for exit_name, sr in outs.items():
            panel = _to_uint8(torch.cat([up[0], sr[0].float(), hr[0].float()], dim=-1))
            tag = f"{set_name}{'_' + exit_name if exit_name else ''}"
            path = Path(self.trainer.default_root_dir) / "samples" / tag / f"step{self.global_step:07d}.png"
            write_rgb(path, panel)
            for lg in self.loggers:
                if hasattr(lg, "log_image"):
                    try:
                        lg.log_image(key=f"samples/{tag}", images=[panel], caption=["LR | SR | HR"],
                                     step=self.global_step)
                    except Exception as e:  # a logger hiccup never stops training
                        log.warning("could not log sample image to %s: %s", type(lg).__name__, e)

    def _gather(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            parts: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(parts, records)
            records = [r for p in parts for r in p]
        uniq = {(r["kind"], r["set"], r["exit"], r["index"]): r for r in records}
        return sorted(uniq.values(), key=lambda r: (r["kind"], r["set"], r["exit"], r["index"]))

    @staticmethod
    def aggregate(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
        """{set: {exit: {metric: mean over images, "images": n}}}"""
        acc: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
        for r in records:
            for m in METRIC_MODES:
                if m in r:
                    acc[r["set"]][r["exit"]][m].append(r[m])
        return {s: {e: {**{m: float(np.mean(v)) for m, v in ms.items()}, "images": len(next(iter(ms.values())))}
                    for e, ms in ex.items()} for s, ex in acc.items()}

    def _eval_epoch_end(self, prefix: str) -> None:
        records = self._gather(self._records)
        self._records = []
        model_recs = [r for r in records if r["kind"] == "model"]
        bic = [r for r in records if r["kind"] == "bicubic"]
        if bic:
            self.bicubic_results = {s: ex[""] for s, ex in self.aggregate(bic).items()}
        results = self.aggregate(model_recs)
        self.val_results, self.val_records = results, model_recs
        if self.trainer is not None and getattr(self.trainer, "sanity_checking", False):
            return
        logged: dict[str, float] = {}
        for set_name, exits in results.items():
            for exit_name, ms in exits.items():
                for m in METRIC_MODES:
                    if m in ms:
                        logged[metric_key(set_name, exit_name, m, prefix)] = ms[m]
        for m in METRIC_MODES:  # the headline numbers: mean over sets of the main output
            vals = [ex[""][m] for ex in results.values() if "" in ex and m in ex[""]]
            if vals:
                logged[f"{prefix}/{m}"] = float(np.mean(vals))
        for k, v in logged.items():
            self.log(k, v, sync_dist=False, add_dataloader_idx=False, prog_bar=k == f"{prefix}/psnr")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")
