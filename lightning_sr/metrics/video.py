"""Video SR metrics as TecoGAN's official script defines them (``thunil/TecoGAN/metrics.py``).

For a clip of ``n`` frames, frames ``2 .. n-3`` are scored (the first and last two are left out):

* **PSNR** on the Y channel (BT.601, not rounded) of the 8-bit output, and **SSIM** (MATLAB window) likewise,
  on the *centre crop* whose sides are multiples of 32 with at least 8 pixels removed on every side
  (TecoGAN's ``crop_8x8``; 576x720 -> 544x704 at offset (16, 8));
* **LPIPS** (AlexNet v0.1, inputs in [-1, 1]) on the same crop;
* **tOF**: for consecutive frames (i-1, i), i = 3 .. n-3, OpenCV Farneback flow (0.5, 3, 15, 3, 5, 1.2, 0) of the
  grey output frames and of the grey ground-truth frames, computed on whole frames and then cropped; tOF is the
  mean over pixels of the L2 norm of their difference;
* **tLP100**: ``|LPIPS(gt_{i-1}, gt_i) - LPIPS(out_{i-1}, out_i)| x 100`` on the crops, same pairs.

Averages: a clip's number is the mean over its frames ("clip average"); a set's headline number is the mean over
all scored frames of all its clips ("frame average", TecoGAN's ``FrameAvg``); both are reported.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

from lightning_sr.metrics.sr_metrics import psnr, ssim

CUT = 2  # frames left out at each end of a clip
FARNEBACK = (0.5, 3, 15, 3, 5, 1.2, 0)
VIDEO_METRICS = ("psnr", "ssim", "lpips", "tof", "tlp")


def centre_crop_box(h: int, w: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of TecoGAN's ``crop_8x8``: sides multiples of 32, at least 8 px off each side."""
    ch, cw = (h // 32) * 32, (w // 32) * 32
    while ch > h - 16:
        ch -= 32
    while cw > w - 16:
        cw -= 32
    if ch <= 0 or cw <= 0:
        raise ValueError(f"frames of {w}x{h} are too small for the video metrics' centre crop (at least 48x48)")
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def to_uint8_hwc(frame: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> H x W x 3 uint8 RGB (rounded, as a saved PNG)."""
    return (frame.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


def grey(frame_u8: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(frame_u8, cv2.COLOR_RGB2GRAY)


def farneback(prev_grey: np.ndarray, grey_frame: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.calcOpticalFlowFarneback(prev_grey, grey_frame, None, *FARNEBACK)


class ClipScorer:
    """Scores one clip frame by frame (see the module docstring), holding only the previous frame (constant memory
    in the clip length). ``lpips``: an LPIPS module or None.
    ``gt_cache``/``key``: a dict that keeps LPIPS(gt_{i-1}, gt_i) (it does not depend on the model) per
    (key, i) across evaluations of the same clip."""

    def __init__(self, n_frames: int, lpips=None, gt_cache: dict | None = None, key: Any = None):
        self.n, self.lpips = int(n_frames), lpips
        self.gt_cache, self.key = gt_cache, key
        self.prev: dict[str, Any] | None = None

    def _lpips(self, a: torch.Tensor, b: torch.Tensor) -> float:
        self.lpips.to(a.device)
        return float(self.lpips(a.unsqueeze(0), b.unsqueeze(0))[0])

    def update(self, i: int, sr: torch.Tensor, gt: torch.Tensor) -> dict[str, float] | None:
        """Frame ``i`` (0-based) of the clip, (3, H, W) in [0, 1]; returns its scores when it is scored."""
        if not CUT <= i < self.n - CUT:
            return None
        h, w = gt.shape[-2:]
        t, l_, ch, cw = centre_crop_box(h, w)
        sr8, gt8 = to_uint8_hwc(sr), to_uint8_hwc(gt)
        q = lambda a: torch.from_numpy(a).permute(2, 0, 1).float().div(255).to(sr.device)  # noqa: E731
        src, gtc = q(sr8)[:, t:t + ch, l_:l_ + cw], q(gt8)[:, t:t + ch, l_:l_ + cw]
        out = {"psnr": float(psnr(src, gtc, 0, True)[0]), "ssim": float(ssim(src, gtc, 0, True)[0])}
        cur = {"sr_grey": grey(sr8), "gt_grey": grey(gt8), "sr": src, "gt": gtc}
        if self.lpips is not None:
            out["lpips"] = self._lpips(gtc, src)
        if i > CUT and self.prev is not None:
            diff = farneback(self.prev["gt_grey"], cur["gt_grey"]) - farneback(self.prev["sr_grey"], cur["sr_grey"])
            diff = diff[t:t + ch, l_:l_ + cw]
            out["tof"] = float(np.sqrt((diff.astype(np.float64) ** 2).sum(-1)).mean())
            if self.lpips is not None:
                ck = (self.key, i)
                if self.gt_cache is not None and ck in self.gt_cache:
                    gt_lp = self.gt_cache[ck]
                else:
                    gt_lp = self._lpips(self.prev["gt"], gtc)
                    if self.gt_cache is not None:
                        self.gt_cache[ck] = gt_lp
                out["tlp"] = abs(gt_lp - self._lpips(self.prev["sr"], src)) * 100.0
        self.prev = cur
        return out


class VideoMetrics(Metric):
    """Frame-average PSNR, SSIM, tOF (and LPIPS, tLP100 when given an LPIPS module) over every scored frame of the
    clips passed to :meth:`update` (whole clips, (T, 3, H, W) in [0, 1]); DDP-synchronised by torchmetrics. For use
    outside the modules."""

    full_state_update = False

    def __init__(self, lpips=None, **kwargs: Any):
        super().__init__(**kwargs)
        self._lp = [lpips]
        for m in VIDEO_METRICS:
            self.add_state(f"{m}_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{m}_n", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, sr_clip: torch.Tensor, gt_clip: torch.Tensor) -> None:  # type: ignore[override]
        scorer = ClipScorer(gt_clip.shape[0], self._lp[0])
        for i in range(gt_clip.shape[0]):
            for m, v in (scorer.update(i, sr_clip[i], gt_clip[i]) or {}).items():
                setattr(self, f"{m}_sum", getattr(self, f"{m}_sum") + v)
                setattr(self, f"{m}_n", getattr(self, f"{m}_n") + 1)

    def compute(self) -> dict[str, float]:
        return {m: float(getattr(self, f"{m}_sum") / getattr(self, f"{m}_n")) for m in VIDEO_METRICS
                if int(getattr(self, f"{m}_n")) > 0}
