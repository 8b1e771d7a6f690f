"""Upscale images, folders, frame folders and video files with a trained model.

    lsr-upscale ckpt_path=MODEL input=IMG|DIR|VIDEO [output=PATH] [tile=auto|0|N] [tile_overlap=16]
                [device=auto|cpu|cuda|cuda:N] [precision=fp32|bf16] [exit=K] [fps=25] [warmup=5] [progress=true]
    python -m lightning_sr.upscale ...   (the same)

``ckpt_path``: any model file the loader registry reads (:mod:`lightning_sr.deploy`): a checkpoint of train.py
(plain, pruned, SRGAN's generator, multi-exit, video), an exit exported by ``lightning_sr.export exit=K``, or a
``.pt2`` program written by ``lightning_sr.export format=exported_program``.

``input``:

* an image (PNG, JPEG, WebP, BMP, TIFF; 8 or 16 bit, gray or RGBA become 8-bit RGB exactly as in training:
  :func:`lightning_sr.ops.image_io.read_rgb`) -> ``output`` (an image file, or a folder: ``<output>/<stem>.png``);
* a folder of images -> ``<output>/<stem>.png`` each. For a video model (FRVSR/TecoGAN) a folder is a clip: its
  frames are streamed in time order (:func:`lightning_sr.data.frames.list_frames`) with the recurrent state,
  after ``warmup`` warm-up frames (default 5, TecoGAN's: frames 5..1 run first and their outputs are dropped;
  ``min(warmup, n - 1)`` for a clip of n frames; 0 = cold start), exactly as ``evaluate.py`` with the same
  ``val.warmup_frames``;
* a video file (``.mp4``, ``.avi``, ``.mov``, ``.mkv``, ``.webm``, ``.m4v``; read with OpenCV) -> a video file
  (mp4v, same frame rate) when ``output`` ends in a video suffix, else PNG frames in the ``output`` folder.
  Image models upscale a video frame by frame.

Frames are read, upscaled and written one at a time: memory does not grow with the clip length.
``output`` defaults to ``<input>_x<scale>`` beside the input (same suffix; a folder for a folder).

The output is the 8-bit image that ``evaluate.py`` scores for the same LR input, bit for bit: the same function
(:func:`lightning_sr.inference.sr_outputs`: fp32, autocast off, :func:`~lightning_sr.networks.tiling.tiled_forward`)
and the same rounding (:func:`lightning_sr.inference.to_uint8`). ``tile=auto`` (default) runs whole images when
they fit the memory budget (half the free GPU memory, a quarter of the available RAM), else in the largest tiles
that fit; whole images equal ``evaluate.py``'s default ``val.tile=0``, and ``tile=N`` equals ``val.tile=N``.
``precision=bf16`` autocasts to bfloat16 (meant for GPUs; faster, not bit-identical to evaluation).
``exit=K`` upscales with exit K of a multi-exit model (default: its deepest, main output).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightning_sr.cli import parse_bool, parse_key_values
from lightning_sr.data.frames import list_frames
from lightning_sr.deploy import Deployable, load_deployable
from lightning_sr.errors import ConfigError, DataError, LightningSRError, require
from lightning_sr.inference import (
    WARMUP_FRAMES,
    is_recurrent,
    precision_context,
    sr_outputs,
    stream_frames,
    to_uint8,
)
from lightning_sr.networks import named_outputs, output_names
from lightning_sr.ops.image_io import IMG_EXTS, list_images, read_rgb, write_rgb

log = logging.getLogger(__name__)

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
KEYS = ("ckpt_path", "input", "output", "tile", "tile_overlap", "device", "precision", "exit", "fps", "warmup",
        "progress")
USAGE = ("usage: lsr-upscale ckpt_path=MODEL input=IMG|DIR|VIDEO [output=PATH] [tile=auto|0|N] [tile_overlap=16] "
         "[device=auto|cpu|cuda] [precision=fp32|bf16] [exit=K] [fps=25] [warmup=5] [progress=true]")
PRECISIONS = {"fp32": None, "32": None, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
PROBE = 32  # LR side of the probe that measures activation memory per pixel


def pick_device(device: str = "auto") -> torch.device:
    d = str(device or "auto").strip().lower()
    if d == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(d)
    except RuntimeError:
        raise ConfigError(f"device={device!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    require(dev.type != "cuda" or torch.cuda.is_available(),
            f"device={device} but no CUDA GPU is visible here; use device=cpu (or auto)")
    return dev


def free_memory(device: torch.device) -> int:
    """Bytes free for activations: the GPU's free memory, or the system's available RAM."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


@dataclass
class Upscaler:
    """One loaded model on one device: LR uint8 images/frames -> SR uint8, through the evaluation path."""

    model: Deployable
    device: torch.device
    dtype: torch.dtype | None = None
    tile: int | None = None          # None: auto (whole when it fits the memory budget)
    overlap: int = 16
    exit: str = ""                   # a multi-exit model's output ("" = the main, deepest one)
    warmup: int = WARMUP_FRAMES      # warm-up frames of a recurrent model (0 = cold start)
    _bytes_per_px: float | None = None

    def __post_init__(self) -> None:
        self.module = self.model.module.to(self.device)
        if self.model.kind == "checkpoint":  # an exported program's module is already in inference form
            self.module.eval()
        self.scale = self.model.scale
        self.fn = self._output_fn()

    @property
    def recurrent(self) -> bool:
        return is_recurrent(self.module)

    def _output_fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        if not self.exit:
            return self.module  # forward(): the main output (a multi-exit model's deepest exit)
        names = output_names(self.module)
        k = str(self.exit)
        name = k if k.startswith("exit") else f"exit{k}"
        deepest = getattr(self.module, "deepest", None)
        name = "" if name == deepest else name
        require(name in names, f"exit={self.exit} does not exist; this model's outputs are "
                               f"{', '.join(n or 'main' for n in names)} (exit= is for multi-exit models)")
        return lambda x: named_outputs(self.module, x)[name]

    # ----- memory -------------------------------------------------------------------------------------------------
    def bytes_per_pixel(self) -> float:
        """Activation bytes per LR pixel, measured once on a small probe (the largest layer output x3 + the output)."""
        if self._bytes_per_px is None:
            sizes: list[int] = []
            hook = lambda m, i, o: sizes.append(o.numel() if isinstance(o, torch.Tensor) else 0)  # noqa: E731
            handles = [m.register_forward_hook(hook) for m in self.module.modules() if not list(m.children())]
            x = torch.rand(1, 3, PROBE, PROBE, device=self.device)
            try:
                with torch.no_grad(), precision_context(self.device, self.dtype):
                    out = self.fn(x)
            finally:
                for h in handles:
                    h.remove()
            elem = 2 if self.dtype in (torch.bfloat16, torch.float16) else 4
            peak = 3 * max(sizes, default=8 * out.numel()) + out.numel()
            self._bytes_per_px = peak * elem / (PROBE * PROBE)
        return self._bytes_per_px

    def tile_for(self, h: int, w: int) -> int:
        """``tile`` when given; auto: 0 (whole) when the image fits the budget, else the largest tile that does."""
        if self.tile is not None:
            return int(self.tile)
        budget = free_memory(self.device) * (0.5 if self.device.type == "cuda" else 0.25)
        bpp = self.bytes_per_pixel()
        if h * w * bpp <= budget:
            return 0
        return max(32, int(math.sqrt(budget / bpp)) // 16 * 16)

    # ----- images and frames --------------------------------------------------------------------------------------
    def to_input(self, arr: np.ndarray) -> torch.Tensor:
        """H x W x 3 uint8 -> (1, 3, H, W) float in [0, 1] on the device (as the evaluation datasets make it)."""
        return (torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous().float() / 255
                ).unsqueeze(0).to(self.device)

    def image(self, arr: np.ndarray) -> np.ndarray:
        lr = self.to_input(arr)
        sr = sr_outputs(self.fn, lr, self.scale, self.tile_for(*arr.shape[:2]), self.overlap, self.dtype)
        return to_uint8(sr[0])

    def frames(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """A stream of LR frames -> SR frames: recurrent models carry their state, others go frame by frame."""
        it = iter(frames)
        first = next(it, None)
        if first is None:
            return
        tile = self.tile_for(*first.shape[:2])

        def tensors():
            yield self.to_input(first)
            for f in it:
                yield self.to_input(f)

        image_fn = None if self.recurrent and not self.exit else (
            lambda x: sr_outputs(self.fn, x, self.scale, tile, self.overlap, self.dtype))
        for sr in stream_frames(self.module, tensors(), self.scale, tile, self.overlap, image_fn, self.dtype,
                                self.warmup):
            yield to_uint8(sr[0])


# ----- video files ------------------------------------------------------------------------------------------------
def read_video(path: Path) -> tuple[Iterator[np.ndarray], float, int]:
    """(RGB frames, one at a time; frames per second; frame count or 0) of a video file, read with OpenCV."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataError(f"cannot open video {path} with OpenCV; convert it to .mp4 or give a folder of frames")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0) or 25.0
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)

    def gen() -> Iterator[np.ndarray]:
        try:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    return
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()

    return gen(), fps, max(count, 0)


class VideoSink:
    """Writes RGB frames to a video file (OpenCV, mp4v), opened at the first frame."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps, self.writer = path, fps, None

    def write(self, rgb: np.ndarray) -> None:
        import cv2

        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            h, w = rgb.shape[:2]
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self.writer.isOpened():
                raise DataError(f"OpenCV cannot write {self.path} here (no mp4v encoder); give output=DIR for PNG "
                                f"frames")
        self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


def _progress(total: int | None, unit: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total or None, unit=unit, disable=not enabled, file=sys.stderr, dynamic_ncols=True)


def default_output(src: Path, scale: int) -> Path:
    return src.with_name(f"{src.stem}_x{scale}{src.suffix}") if src.is_file() else src.with_name(
        f"{src.name}_x{scale}")


def input_kind(src: Path, recurrent: bool) -> str:
    """image | images | frames | video."""
    if src.is_dir():
        return "frames" if recurrent else "images"
    if src.is_file() and src.suffix.lower() in VIDEO_EXTS:
        return "video"
    if src.is_file() and src.suffix.lower() in IMG_EXTS:
        return "image"
    if not src.exists():
        raise DataError(f"input {src} does not exist; give an image, a folder of images/frames or a video file")
    raise DataError(f"input {src}: '{src.suffix}' is neither an image ({', '.join(IMG_EXTS)}) nor a video "
                    f"({', '.join(VIDEO_EXTS)}); convert it or give a folder of frames")


def upscale(ckpt_path: str | Path, input: str | Path, output: str | Path | None = None, tile: str | int = "auto",
            tile_overlap: int = 16, device: str = "auto", precision: str = "fp32", exit: str | int | None = None,
            fps: float | None = None, progress: bool = True, warmup: int | str = WARMUP_FRAMES) -> dict[str, Any]:
    """Upscale ``input`` (see the module docstring) -> {"outputs": [paths], "kind", "count", "tile", "device",
    "seconds"}."""
    t0 = time.perf_counter()
    p = str(precision).strip().lower()
    require(p in PRECISIONS, f"precision={precision!r} is not supported; use fp32 or bf16")
    t = str(tile).strip().lower()
    require(t == "auto" or t.lstrip("-").isdigit(), f"tile={tile!r} is not a tile size; use auto, 0 (whole) or N")
    require(str(tile_overlap).isdigit(), f"tile_overlap={tile_overlap!r} is impossible; use an integer >= 0")
    require(str(warmup).strip().isdigit(),
            f"warmup={warmup!r} is impossible; use 0 (cold start) or the number of warm-up frames (TecoGAN: 5)")
    src = Path(str(input)).expanduser()
    dev = pick_device(device)
    model = load_deployable(ckpt_path)
    up = Upscaler(model, dev, PRECISIONS[p], None if t == "auto" else max(0, int(t)), int(tile_overlap),
                  "" if exit in (None, "") else str(exit), int(str(warmup).strip()))
    kind = input_kind(src, up.recurrent)
    dst = Path(str(output)).expanduser() if output else default_output(src, up.scale)
    written: list[Path] = []
    tiles: set[int] = set()
    if kind in ("image", "images"):
        files = [src] if kind == "image" else list_images(src, "input folder")
        single = kind == "image" and dst.suffix.lower() in IMG_EXTS
        with _progress(len(files), "img", progress) as bar:
            for f in files:
                arr = read_rgb(f)
                tiles.add(up.tile_for(*arr.shape[:2]))
                target = dst if single else dst / f"{f.stem}.png"
                write_rgb(target, up.image(arr))
                written.append(target)
                bar.update(1)
    else:
        if kind == "frames":
            paths = list_frames(src, "input clip")
            frames, rate, total = (read_rgb(f) for f in paths), float(fps or 25.0), len(paths)
            names = (f.stem for f in paths)
        else:
            frames, rate, total = read_video(src)
            rate = float(fps or rate)
            names = (f"frame_{i:06d}" for i in range(10**9))
        first: list[np.ndarray] = []

        def peek(it):
            for f in it:
                if not first:
                    first.append(f)
                yield f

        sink = VideoSink(dst, rate) if dst.suffix.lower() in VIDEO_EXTS else None
        count = 0
        try:
            with _progress(total, "frame", progress) as bar:
                for name, sr in zip(names, up.frames(peek(frames)), strict=False):
                    if sink is not None:
                        sink.write(sr)
                    else:
                        write_rgb(dst / f"{name}.png", sr)
                        written.append(dst / f"{name}.png")
                    count += 1
                    bar.update(1)
        finally:
            if sink is not None:
                sink.close()
        require(bool(first), f"input {src} holds no frames", DataError)
        tiles.add(up.tile_for(*first[0].shape[:2]))
        if sink is not None:
            written = [dst]
    return {"outputs": written, "kind": kind, "count": len(written) if kind in ("image", "images") else count, "tile": sorted(tiles), "device": str(dev), "precision": p, "model": model.spec,
            "seconds": round(time.perf_counter() - t0, 2), "output": dst}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        a = parse_key_values(sys.argv[1:] if argv is None else argv, KEYS, ("ckpt_path", "input"), USAGE, __doc__)
        res = upscale(a["ckpt_path"], a["input"], a.get("output") or None, a.get("tile", "auto"),
                      a.get("tile_overlap", "16"), a.get("device", "auto"), a.get("precision", "fp32"),
                      a.get("exit") or None, float(a["fps"]) if a.get("fps") else None,
                      parse_bool(a.get("progress", "true"), "progress"), a.get("warmup", str(WARMUP_FRAMES)))
    except LightningSRError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tiles = ", ".join("whole" if t == 0 else f"{t} px" for t in res["tile"])
    print(f"upscaled {res['count']} {'frames' if res['kind'] in ('frames', 'video') else 'images'} with "
          f"{res['model'].get('arch')} x{res['model'].get('scale')} ({res['device']}, {res['precision']}, tiles: "
          f"{tiles}) in {res['seconds']:.1f} s -> {res['output']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
