"""Evaluation: the loop every task shares (:class:`EvaluationLoop`) and the SR evaluation path (:class:`SREvaluation`).

Both are mixins of :class:`~lightning_sr.lit_modules.base.TaskModule` (they use its ``generator``, ``scale``,
``val_cfg``, ``metrics_cfg``, ``records`` and result attributes).

**The loop.** Validation and test run every item of every named set, one dataloader per set. A task says how one
item is scored (``item_records``: one record per image and output, with its metrics) and how a dataset yields an
item (``dataset_item``). Per-image values go into a torchmetrics :class:`~lightning_sr.metrics.EvalRecords`, which
torchmetrics gathers across DDP ranks, so the numbers equal a single-process run; they are averaged per set and
logged as ``val/<Set>/<metric>``, ``val/<Set>/<exit>/<metric>`` and the headline ``val/<metric>`` (mean over sets
of the main output). Compression callbacks use the same scoring through :meth:`EvaluationLoop.evaluate_datasets`
(every image, on every rank, no sharding).

**SR.** :meth:`SREvaluation.eval_outputs` runs every named output of the generator (one for a plain model, one per
exit for a multi-exit network) in fp32 with autocast off, whole or in ``val.tile`` tiles;
:meth:`SREvaluation.image_metrics` gives PSNR/SSIM (LPIPS when enabled). The bicubic baseline is computed once, on
every image of every set, with the same two functions; sample panels (LR | SR | HR) of each set's first image go to
``<run>/samples/`` and to loggers that take images.
"""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from lightning_sr.inference import sr_outputs, to_uint8
from lightning_sr.metrics import METRIC_MODES, psnr, ssim
from lightning_sr.networks import output_names
from lightning_sr.ops.image_io import write_rgb
from lightning_sr.ops.imresize import bicubic_upscale

log = logging.getLogger(__name__)


def metric_key(set_name: str, exit_name: str, metric: str, prefix: str = "val") -> str:
    return "/".join(p for p in (prefix, set_name, exit_name, metric) if p)


def item_index(item: dict[str, Any]) -> int:
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


class EvaluationLoop:
    """Validation/test over named sets with per-image records gathered across DDP ranks (any task)."""

    # ----- what a task defines ------------------------------------------------------------------------------
    def item_records(self, item: dict[str, Any], fn=None, panels: bool = False
                     ) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
        """Per-output metric records of one evaluation item and, when asked, the sample panels to save."""
        raise NotImplementedError

    def dataset_item(self, ds, i: int) -> dict[str, Any]:
        """Item ``i`` of an evaluation dataset as its dataloader yields it."""
        raise NotImplementedError

    def aggregate_records(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return aggregate(records)

    def _eval_start(self) -> None:
        self._sync_buffers()

    def _store_results(self, results: dict[str, Any]) -> None:
        """Called with every evaluation's results (sanity checks included), after ``val_results`` is set."""

    # ----- the loop -----------------------------------------------------------------------------------------
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
        want = item_index(batch) == 0 and self.global_rank == 0 and not getattr(self.trainer, "sanity_checking", False)
        records, panels = self.item_records({**batch, "set": set_name}, panels=want)
        all_sets, all_outputs = self._datamodule().eval_names, output_names(self.generator)
        for r in records:
            self.records.update(all_sets.index(set_name), all_outputs.index(r["exit"]), r["index"], r)
        for tag, panel in panels.items():
            self._save_panel(f"{set_name}{tag}", panel)

    def on_validation_start(self) -> None:
        self._eval_start()

    def on_test_start(self) -> None:
        self._eval_start()

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
        self._store_results(results)
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


class SREvaluation(EvaluationLoop):
    """The SR evaluation path: whole (or tiled) images, PSNR/SSIM/LPIPS, the bicubic baseline, sample panels.
    Expects ``self._lpips`` (``[LPIPS or None]``, kept out of the state dict)."""

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
        idx = item_index(item)
        records = [{"exit": name, "index": idx, **self.image_metrics(sr, hr)} for name, sr in outs.items()]
        if self.save_outputs and fn is None and "set" in item:
            self._write_outputs(item, outs)
        shown: dict[str, np.ndarray] = {}
        if panels:
            up = F.interpolate(item["lr"].float(), scale_factor=self.scale, mode="nearest")
            for name, sr in outs.items():
                shown["_" + name if name else ""] = to_uint8(torch.cat([up[0], sr[0].float(), hr[0]], dim=-1))
        return records, shown

    def _write_outputs(self, item: dict[str, Any], outs: dict[str, torch.Tensor]) -> None:
        """``evaluate.py save_outputs=true``: the 8-bit SR images scored, ``<run>/outputs/<set>[_<exit>]/<image>.png``
        (what ``lsr-upscale`` writes for the same LR image)."""
        name = item.get("name", item_index(item))
        name = name[0] if isinstance(name, (list, tuple)) else name
        root = Path(self.trainer.default_root_dir) / "outputs"
        for out_name, sr in outs.items():
            write_rgb(root / (item["set"] + (f"_{out_name}" if out_name else "")) / f"{name}.png", to_uint8(sr[0]))

    def dataset_item(self, ds, i: int) -> dict[str, Any]:
        """Item ``i`` of an evaluation dataset as its dataloader yields it (a batch of one image)."""
        item = ds[i]
        return {**item, "lr": item["lr"].unsqueeze(0), "hr": item["hr"].unsqueeze(0)}

    # ----- the bicubic baseline -------------------------------------------------------------------------------
    def _bicubic_outputs(self, lr: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"": bicubic_upscale(lr, self.scale)}

    def _ensure_bicubic(self) -> None:
        """The bicubic baseline, once, on every image of every evaluation set (whatever the trainer settings)."""
        dm = self._datamodule()
        if self.bicubic_results or dm is None or not hasattr(dm, "sets") or self._is_bicubic():
            return  # the bicubic model's own results are the baseline (_store_results)
        res = self.evaluate_datasets(dm.sets("test"), fn=self._bicubic_outputs)
        self.bicubic_results = {s: ex[""] for s, ex in res.items()}

    def _is_bicubic(self) -> bool:
        return self.generator_spec.get("arch") == "bicubic"

    def _eval_start(self) -> None:
        super()._eval_start()
        self._ensure_bicubic()

    def _store_results(self, results: dict[str, Any]) -> None:
        if self._is_bicubic():
            self.bicubic_results = {s: ex[""] for s, ex in results.items() if "" in ex}
