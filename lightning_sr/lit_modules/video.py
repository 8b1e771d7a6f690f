"""Video SR: FRVSR (``model=frvsr``, PSNR-oriented) and TecoGAN (``model=tecogan``) training, and the evaluation
of any generator on video clips (``evaluate.py data=vid4``), with TecoGAN's metrics.

**Training** runs :meth:`FRNet.forward_sequence` over whole training clips (manual optimisation; with a GAN, a
generator and a discriminator step per batch). Loss terms, TecoGAN's defaults (all in ``conf/model/*.yaml``):

* ``pixel`` (Charbonnier, L1 or MSE) x 1 between every output frame and the ground truth;
* ``warp`` (Charbonnier) x 1: the previous LR frame warped by FNet's flow against the current one (flow quality);
* ``pingpong`` x 0.5 (TecoGAN): the clip is played forward then backward (2T - 1 frames) and the two outputs for the
  same frame must agree;
* ``feature`` x 0.2 (TecoGAN): 1 - cosine similarity of VGG19 features at ``feature.layers``;
* ``gan`` x 0.01 (TecoGAN): vanilla GAN loss from the spatio-temporal discriminator on frame triplets (the frames,
  the frames warped to the centre one with a zeroed border, the bicubic LR triplet). The discriminator is updated
  only while it is not too strong: ``mean log sigmoid(D(real)) - mean log sigmoid(D(fake)) < update_threshold``
  (0.4), a number all DDP ranks agree on; otherwise its step changes nothing (but counts, so
  ``trainer.max_steps`` keeps meaning two optimiser steps per batch).

**Evaluation** streams each clip frame by frame through ``infer_sequence`` (constant memory in the clip length;
in ``val.tile`` tiles, each tile with its own recurrent state, when set) and scores it with
:class:`~lightning_sr.metrics.video.ClipScorer`: PSNR/SSIM/LPIPS on TecoGAN's centre crop, tOF, tLP100, frames
2..n-3. A generator without ``infer_sequence`` (an image model, the bicubic baseline) runs frame by frame.
Per-set numbers are frame averages; ``clip_avg`` and ``per_clip`` give the clip averages (metrics.json).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from lightning_sr.data.video import FRAME_INDEX
from lightning_sr.errors import require
from lightning_sr.inference import WARMUP_FRAMES, is_recurrent, stream_frames, to_uint8
from lightning_sr.lit_modules.evaluation import aggregate
from lightning_sr.lit_modules.gan import GANMixin
from lightning_sr.lit_modules.sr import SRBaseModule
from lightning_sr.losses import CosineFeatureLoss, charbonnier_loss, pixel_loss
from lightning_sr.metrics import METRIC_MODES, ClipScorer
from lightning_sr.networks import SpatioTemporalDiscriminator, backward_warp
from lightning_sr.networks.video import upscale_flow
from lightning_sr.ops.image_io import write_rgb
from lightning_sr.ops.imresize import bicubic_upscale

log = logging.getLogger(__name__)


def check_video_args(model_cfg: dict[str, Any]) -> None:
    for key in ("pixel_weight", "warp_weight", "pingpong_weight"):
        v = model_cfg.get(key, 0.0)
        require(isinstance(v, (int, float)) and v >= 0, f"model.{key}={v!r} is impossible; use a number >= 0")
    for key in ("feature", "gan"):
        v = (model_cfg.get(key) or {}).get("weight", 0.0)
        require(isinstance(v, (int, float)) and v >= 0, f"model.{key}.weight={v!r} is impossible; use a number >= 0")
    thr = (model_cfg.get("discriminator") or {}).get("update_threshold", 0.4)
    require(thr is None or isinstance(thr, (int, float)),
            f"model.discriminator.update_threshold={thr!r} is impossible; use a number (or null: always update)")


def pingpong(clip: torch.Tensor) -> torch.Tensor:
    """(N, T, ...) -> (N, 2T - 1, ...): the clip forward then backward (frame T-1 once)."""
    return torch.cat([clip, clip.flip(1)[:, 1:]], dim=1)


def pingpong_loss(sr: torch.Tensor, t: int) -> torch.Tensor:
    """Charbonnier distance between the forward pass's outputs of frames 0..T-2 and the backward pass's outputs of
    the same frames (positions 2T-2 .. T of the ping-pong sequence)."""
    return charbonnier_loss(sr[:, : t - 1], sr[:, t:].flip(1))


class VideoSRModule(GANMixin, SRBaseModule):
    records_file = "per_frame.csv"
    frozen_losses = ("feature_loss",)  # VGG19
    supports_int8 = False  # declared for compression=qat|ptq, which capture image generators (one LR frame in)

    def __init__(self, generator_spec: dict[str, Any], scale: int, loss: str = "charbonnier", pixel_weight: float = 1.0,
                 warp_weight: float = 1.0, pingpong_weight: float = 0.0, feature: dict | None = None,
                 gan: dict | None = None, discriminator: dict | None = None, optim_d: dict | None = None,
                 patch_size: int = 128, save_outputs: bool = False, **kwargs: Any):
        check_video_args({"pixel_weight": pixel_weight, "warp_weight": warp_weight, "pingpong_weight": pingpong_weight,
                          "feature": feature, "gan": gan, "discriminator": discriminator})
        super().__init__(generator_spec, scale, loss=loss, pixel_weight=pixel_weight, warp_weight=warp_weight,
                         pingpong_weight=pingpong_weight, feature=feature, gan=gan, discriminator=discriminator,
                         optim_d=optim_d, patch_size=patch_size, **kwargs)
        self.save_outputs = bool(save_outputs)
        self.pixel_loss, self.pixel_weight = pixel_loss(loss), float(pixel_weight)
        self.warp_weight, self.pingpong_weight = float(warp_weight), float(pingpong_weight)
        f, d = dict(feature or {}), dict(discriminator or {})
        self.feature_weight = float(f.get("weight", 0.0))
        self.feature_loss = (CosineFeatureLoss(tuple(f.get("layers", ("relu2_2", "relu3_4", "relu4_4", "relu5_4"))),
                                               f.get("pretrained", True), f.get("weights_path"))
                             if self.feature_weight > 0 else None)
        self.init_gan(gan, optim_d, weight=0.0)
        self.update_threshold = d.get("update_threshold", 0.4)
        self.crop_border_ratio = float(d.get("crop_border_ratio", 0.75))
        self.discriminator = (SpatioTemporalDiscriminator(patch_size, d.get("channels", 64))
                              if self.gan_weight > 0 else None)
        self._gt_lpips: dict = {}  # LPIPS(gt_{i-1}, gt_i) per (clip folder, frame): model-independent, computed once

    @staticmethod
    def check_config(model_cfg: dict[str, Any]) -> None:
        check_video_args(model_cfg)

    # ----- training -----------------------------------------------------------------------------------------------
    def _triplet_flows(self, lr: torch.Tensor) -> torch.Tensor:
        """HR flows that warp frames 3j and 3j+2 onto 3j+1 (and zeros for 3j+1): (N*k, 3, 2, H, W), no gradient."""
        n, t, c, h, w = lr.shape
        k = t // 3
        tri = lr[:, : 3 * k].reshape(n * k, 3, c, h, w)
        with torch.no_grad():
            fnet = self.generator.fnet
            bw = fnet(tri[:, 1], tri[:, 0])
            fw = fnet(tri[:, 1], tri[:, 2])
        flows = torch.stack([bw, torch.zeros_like(bw), fw], dim=1).flatten(0, 1)
        return upscale_flow(flows, self.scale).view(n * k, 3, 2, h * self.scale, w * self.scale)

    def _d_input(self, frames: torch.Tensor, lr: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
        """27-channel triplets: frames, frames warped to the centre one (border zeroed), bicubic LR triplet."""
        n, t, c, hh, ww = frames.shape
        k = t // 3
        tri = frames[:, : 3 * k].reshape(n * k, 3, c, hh, ww)
        warped = backward_warp(tri.flatten(0, 1), flows.flatten(0, 1)).view(n * k, 3, c, hh, ww)
        ch, cw = int(hh * self.crop_border_ratio), int(ww * self.crop_border_ratio)
        top, left = (hh - ch) // 2, (ww - cw) // 2
        mask = torch.zeros(1, 1, 1, hh, ww, device=frames.device, dtype=frames.dtype)
        mask[..., top:top + ch, left:left + cw] = 1
        align = getattr(getattr(self.generator, "srnet", None), "skip_align", "center")
        cond = bicubic_upscale(lr[:, : 3 * k].reshape(n * k * 3, c, *lr.shape[-2:]), self.scale, align
                               ).view(n * k, 3, c, hh, ww)
        return torch.cat([tri.flatten(1, 2), (warped * mask).flatten(1, 2), cond.flatten(1, 2)], dim=1)

    def training_step(self, batch, batch_idx):
        opts = self.optimizers()
        opt_g, opt_d = (opts if isinstance(opts, (list, tuple)) else (opts, None))
        lr, hr = batch["lr"], batch["hr"]
        t = lr.shape[1]
        if self.pingpong_weight > 0:  # forward then backward: 2t - 1 frames
            lr, hr = pingpong(lr), pingpong(hr)
        out = self.generator.forward_sequence(lr)
        sr = out["hr"]
        terms = {"pixel": self.pixel_weight * self.pixel_loss(sr, hr),
                 "warp": self.warp_weight * charbonnier_loss(backward_warp(out["lr_prev"], out["lr_flow"]),
                                                             out["lr_curr"])}
        if self.pingpong_weight > 0:
            terms["pingpong"] = self.pingpong_weight * pingpong_loss(sr, t)
        if self.feature_loss is not None:
            terms["feature"] = self.feature_weight * self.feature_loss(sr.flatten(0, 1), hr.flatten(0, 1))
        flows = None
        if self.discriminator is not None:
            self.toggle_optimizer(opt_g)
            flows = self._triplet_flows(lr)
            terms["gan"] = self.gan_weight * self.gan_loss.generator_loss(
                self.discriminator(self._d_input(sr, lr, flows)), None)
        self.manual_step(opt_g, self.compose_loss(terms, lr=lr, hr=hr, outputs={"": sr}))
        if self.discriminator is not None:
            self.untoggle_optimizer(opt_g)
            self._discriminator_step(opt_d, sr.detach(), hr, lr, flows)
        self.step_schedulers()

    def _discriminator_step(self, opt_d, fake, real, lr, flows) -> None:
        self.toggle_optimizer(opt_d)
        real_logits = self.discriminator(self._d_input(real, lr, flows))
        fake_logits = self.discriminator(self._d_input(fake, lr, flows))
        loss_d = self.gan_loss.discriminator_loss(real_logits, fake_logits)
        with torch.no_grad():
            distance = (F.logsigmoid(real_logits).mean() - F.logsigmoid(fake_logits).mean()).detach()
            if dist.is_available() and dist.is_initialized():  # every rank takes the same decision
                dist.all_reduce(distance)
                distance /= dist.get_world_size()
        update = self.update_threshold is None or float(distance) < float(self.update_threshold)
        self.manual_step(opt_d, loss_d, update)  # update=False: D is too strong, this step changes nothing
        self.untoggle_optimizer(opt_d)
        self.log_dict({"train/loss_d": loss_d.detach(), "train/d_distance": distance,
                       "train/d_updated": float(update)})

    # ----- evaluation ---------------------------------------------------------------------------------------------
    def dataset_item(self, ds, i: int) -> dict[str, Any]:
        return ds[i]

    def _stream(self, lr_frames, device, fn=None):
        """SR frames (1, 3, H, W) of a clip, one at a time (:func:`lightning_sr.inference.stream_frames`): recurrent
        generators keep their state between frames, after ``val.warmup_frames`` warm-up frames (TecoGAN's 5 by
        default, 0 = cold start); other generators (or ``fn``) go through ``eval_outputs``."""
        to = lambda f: f.float().div(255).unsqueeze(0).to(device)  # noqa: E731
        gen = self.generator
        tile, overlap = int(self.val_cfg.get("tile", 0) or 0), int(self.val_cfg.get("tile_overlap", 16))
        image_fn = None if fn is None and is_recurrent(gen) else (lambda x: self.eval_outputs(x, fn)[""])
        warmup = int(self.val_cfg.get("warmup_frames", WARMUP_FRAMES) or 0)
        yield from stream_frames(gen, (to(f) for f in lr_frames), self.scale, tile, overlap, image_fn=image_fn,
                                 warmup=warmup)

    @torch.no_grad()
    def item_records(self, item: dict[str, Any], fn=None, panels: bool = False
                     ) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
        """Per-frame records of one clip (scored frames only) and, when asked, the middle frame's LR | SR | GT."""
        device = next((p.device for p in self.generator.parameters()), self.device)
        lr_frames, hr_frames = item["lr"], item["hr"]
        n, clip = len(hr_frames), int(item["index"])
        # the clip's folder, not its name: two sets may hold clips of the same name and size (REDS val and REDS4)
        key = (item.get("path") or item["name"], n, tuple(hr_frames[0].shape))
        scorer = ClipScorer(n, self._lpips[0], self._gt_lpips, key)
        records, shown = [], {}
        out_dir = self._outputs_dir(item) if self.save_outputs and fn is None else None
        for i, sr in enumerate(self._stream(lr_frames, device, fn)):
            gt = hr_frames[i].float().div(255).to(device)
            scores = scorer.update(i, sr[0], gt)
            if scores is not None:
                records.append({"exit": "", "index": clip * FRAME_INDEX + i, **scores})
            if panels and i == n // 2:
                up = F.interpolate(lr_frames[i].float().div(255)[None].to(device), scale_factor=self.scale,
                                   mode="nearest")
                shown[""] = to_uint8(torch.cat([up[0], sr[0].float(), gt], dim=-1))
            if out_dir is not None:
                self._write_output(out_dir, item, i, lr_frames[i], sr[0], gt)
        return records, shown

    def _outputs_dir(self, item: dict[str, Any]) -> Path | None:
        if self._trainer is None:
            return None
        return Path(self.trainer.default_root_dir) / "outputs" / item["name"]

    def _write_output(self, out_dir: Path, item: dict[str, Any], i: int, lr, sr, gt) -> None:
        """The SR frame as PNG, and for the first clip an LR | SR | GT strip (PNG frames, then an MP4)."""
        name = item["frame_names"][i]
        write_rgb(out_dir / f"{name}.png", to_uint8(sr))
        if int(item["index"]) == 0:
            up = F.interpolate(lr.float().div(255)[None], scale_factor=self.scale, mode="nearest")[0].to(sr.device)
            strip = to_uint8(torch.cat([up, sr.float(), gt], dim=-1))
            write_rgb(out_dir.parent.parent / "strip" / item["name"] / f"{name}.png", strip)

    def on_test_end(self) -> None:
        if self.save_outputs and self._trainer is not None and self.global_rank == 0:
            encode_strips(Path(self.trainer.default_root_dir) / "strip")

    def aggregate_records(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Frame averages per set (the headline), plus ``clips``, ``clip_avg`` and ``per_clip``."""
        res = aggregate(records)
        for s, exits in res.items():
            main = exits.get("")
            if main is None:
                continue
            per_clip: dict[str, list[dict[str, Any]]] = {}
            for r in records:
                if r["set"] == s and r["exit"] == "":
                    per_clip.setdefault(str(r.get("image", r["index"] // FRAME_INDEX)).split("/")[0], []).append(r)
            clip_means = {c: {m: float(np.mean([r[m] for r in rs if m in r])) for m in METRIC_MODES
                              if any(m in r for r in rs)} for c, rs in per_clip.items()}
            main["frames"] = main.pop("images")
            main["images"] = main["frames"]
            main["clips"] = len(clip_means)
            main["clip_avg"] = {m: float(np.mean([v[m] for v in clip_means.values() if m in v]))
                                for m in METRIC_MODES if any(m in v for v in clip_means.values())}
            main["per_clip"] = clip_means
        return res


def encode_strips(folder: Path) -> list[Path]:
    """Each ``strip/<clip>/`` folder of PNG frames -> ``strip/<clip>.mp4`` when OpenCV can write MP4 here."""
    written = []
    try:
        import cv2
    except ImportError:
        return written
    for clip in sorted(p for p in folder.glob("*") if p.is_dir()):
        frames = sorted(clip.glob("*.png"))
        if not frames:
            continue
        first = cv2.imread(str(frames[0]))
        h, w = first.shape[:2]
        out = clip.with_suffix(".mp4")
        writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
        if not writer.isOpened():
            log.info("no MP4 encoder in this OpenCV build: the strip stays as PNG frames in %s", clip)
            continue
        for f in frames:
            writer.write(cv2.imread(str(f)))
        writer.release()
        written.append(out)
    return written
