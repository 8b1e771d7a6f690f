"""Classification data (``data=cifar10``): CIFAR-10 from a local folder, for the Weight Recycle table.

``data.root`` holds CIFAR-10 in one of two layouts (found by themselves):

* torchvision's python batches: ``<root>/cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch``
  (``batches.meta`` for the class names; the folder itself may be ``data.root``), as extracted from
  ``cifar-10-python.tar.gz``. They are pickles: read with an unpickler that only builds dicts, lists, strings and
  numpy arrays (nothing else a file could ask for);
* an image folder: ``<root>/train/<class>/*.png`` and ``<root>/test/<class>/*.png`` (any image format, all images
  the same size; classes are the sorted folder names of ``train``).

Nothing is downloaded; a missing folder or batch file is a one-line error naming what is expected.
``data.kind=embedded`` builds a small 10-class set without download (32x32 tiles of ten photographs that ship
inside scikit-image, a class per photograph; training tiles from the upper three quarters of each photograph, test
tiles from the bottom quarter) in the image-folder layout, for smoke runs (``profile=smoke``).

Training samples: sample number ``s`` of the stream (continuing from the global step, like the SR data) is image
``perm_e[s % N]`` of epoch ``e = s // N`` (a fresh permutation per epoch: every image once per epoch), with a
random 32x32 crop of the image zero-padded by 4 pixels and a horizontal flip (``data.augment``), all drawn from
(seed, s): runs resume exactly. Images are normalised by the per-channel mean and standard deviation of the
training images. Evaluation: the test set (``<name>_test``); with ``data.val_split`` > 0 the last images of a fixed
permutation of the training set validate (``<name>_val``, picks checkpoints) and the test set is reported at the
end only, else the test set is the validation set (as in the paper's table: test accuracy).
"""

from __future__ import annotations

import io
import logging
import math
import pickle
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from lightning_sr.data.base import EvalSetsMixin
from lightning_sr.data.cache import cache_root
from lightning_sr.data.datasets import TEST, VAL
from lightning_sr.data.embedded import load_photo, png_bytes
from lightning_sr.errors import DataError, require
from lightning_sr.fs import atomic_write
from lightning_sr.ops.image_io import list_images, read_rgb

log = logging.getLogger(__name__)

BATCH_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
KINDS = ("cifar10", "embedded")
LAYOUT = (f"<root>/{BATCH_DIR}/{{{','.join(TRAIN_BATCHES)},{TEST_BATCH}}} (python version of CIFAR-10, "
          f"cifar-10-python.tar.gz extracted) or <root>/train/<class>/*.png + <root>/test/<class>/*.png")
PAD = 4


# ----- reading -----------------------------------------------------------------------------------------------
class _BatchUnpickler(pickle.Unpickler):
    """Builds only what a CIFAR batch holds: containers, strings, numbers and numpy arrays."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch")


def _read_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            d = _BatchUnpickler(io.BufferedReader(f), encoding="bytes").load()
    except Exception as e:
        raise DataError(f"cannot read CIFAR batch {path}: {type(e).__name__}: {e}; re-extract "
                        f"cifar-10-python.tar.gz") from None
    d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        raise DataError(f"{path} is not a CIFAR-10 batch (no 'data'/'labels'); re-extract cifar-10-python.tar.gz")
    return d


def _batch_arrays(paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for p in paths:
        d = _read_batch(p)
        x = np.asarray(d["data"], dtype=np.uint8)
        if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(d["labels"]) != x.shape[0]:
            raise DataError(f"{p}: data of shape {x.shape} with {len(d['labels'])} labels; expected (N, 3072) "
                            f"uint8 and N labels (CIFAR-10 python version)")
        xs.append(torch.from_numpy(x.reshape(-1, 3, 32, 32).copy()))
        ys.append(torch.as_tensor(list(d["labels"]), dtype=torch.long))
    return torch.cat(xs), torch.cat(ys)


def load_cifar_batches(folder: Path) -> dict[str, Any]:
    missing = [n for n in (*TRAIN_BATCHES, TEST_BATCH) if not (folder / n).is_file()]
    if missing:
        raise DataError(f"CIFAR-10 folder {folder} lacks {', '.join(missing)} (expected: {', '.join(TRAIN_BATCHES)}, "
                        f"{TEST_BATCH}); re-extract cifar-10-python.tar.gz into data.root")
    train_x, train_y = _batch_arrays([folder / n for n in TRAIN_BATCHES])
    test_x, test_y = _batch_arrays([folder / TEST_BATCH])
    n = int(max(train_y.max(), test_y.max())) + 1
    classes = [str(i) for i in range(n)]
    if (folder / "batches.meta").is_file():
        names = _read_meta(folder / "batches.meta")
        classes = names if len(names) >= n else classes
    return {"train": (train_x, train_y), "test": (test_x, test_y), "classes": classes, "source": str(folder)}


def _read_meta(path: Path) -> list[str]:
    try:
        with open(path, "rb") as f:
            d = _BatchUnpickler(f, encoding="bytes").load()
        names = d.get(b"label_names", d.get("label_names", []))
        return [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    except Exception as e:
        log.warning("could not read class names from %s (%s): using class numbers", path, e)
        return []


def _read_split(folder: Path, classes: list[str] | None, what: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    if not folder.is_dir():
        raise DataError(f"{what} {folder} does not exist (expected layout: {LAYOUT})")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise DataError(f"{what} {folder} holds no class folders (expected <class>/*.png inside)")
    classes = classes or found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"{what} {folder} has classes {', '.join(unknown)} that train/ does not; give both the same "
                        f"class folders")
    xs, ys, shape = [], [], None
    for c in found:
        for f in list_images(folder / c, f"class folder {c!r} of {what}"):
            img = read_rgb(f)
            if shape is None:
                shape = img.shape
            elif img.shape != shape:
                raise DataError(f"image {f} is {img.shape[1]}x{img.shape[0]}, the others {shape[1]}x{shape[0]}; "
                                f"give every image the same size")
            xs.append(torch.from_numpy(img).permute(2, 0, 1))
            ys.append(classes.index(c))
    return torch.stack(xs), torch.as_tensor(ys, dtype=torch.long), classes


def load_image_folders(root: Path) -> dict[str, Any]:
    train_x, train_y, classes = _read_split(root / "train", None, "training folder")
    test_x, test_y, _ = _read_split(root / "test", classes, "test folder")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(f"{root}: training images are {tuple(train_x.shape[1:])}, test images "
                        f"{tuple(test_x.shape[1:])}; give both the same size")
    return {"train": (train_x, train_y), "test": (test_x, test_y), "classes": classes, "source": str(root)}


def load_cifar10(root: str | Path | None) -> dict[str, Any]:
    """Train and test arrays (uint8 (N, 3, H, W), labels) and class names from ``root`` in either layout."""
    require(root not in (None, ""), f"data.root is not set; give the folder that holds CIFAR-10 ({LAYOUT})",
            DataError)
    base = Path(str(root)).expanduser()
    if (base / BATCH_DIR).is_dir():
        return load_cifar_batches(base / BATCH_DIR)
    if base.name == BATCH_DIR or any((base / n).exists() for n in (*TRAIN_BATCHES, TEST_BATCH)):
        return load_cifar_batches(base)
    if (base / "train").is_dir() or (base / "test").is_dir():
        return load_image_folders(base)
    what = "does not exist" if not base.is_dir() else "holds no CIFAR-10"
    raise DataError(f"data.root={base} {what}: expected {LAYOUT}")


# ----- the embedded set (no download) ----------------------------------------------------------------------------
EMBEDDED_CLASSES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
                    "retina", "motorcycle_left", "colorwheel", "camera")
EMBEDDED_VERSION = "1"


def embedded_folders(root: str | Path | None = None, side: int = 128, tile: int = 32, stride: int = 16) -> Path:
    """Write the embedded 10-class tile set once (image-folder layout) and return its root."""
    from PIL import Image

    base = Path(root).expanduser() if root else cache_root() / "embedded_classify"
    done = base / ".complete"
    if done.is_file() and done.read_text().strip() == EMBEDDED_VERSION:
        return base
    for name in EMBEDDED_CLASSES:
        img = load_photo(name)
        img = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]
        h, w = img.shape[:2]
        s = side / min(h, w)
        img = np.asarray(Image.fromarray(img).resize((round(w * s), round(h * s)), Image.LANCZOS))
        h, w = img.shape[:2]
        split = (h * 3) // 4
        k = 0
        for y in range(0, h - tile + 1, stride):
            for x in range(0, w - tile + 1, stride):
                if y + tile <= split:
                    part = "train"
                elif y >= split:
                    part = "test"
                else:  # straddles the split: in neither set
                    continue
                atomic_write(base / part / name / f"{k:04d}.png", png_bytes(img[y:y + tile, x:x + tile]))
                k += 1
    atomic_write(done, EMBEDDED_VERSION + "\n")
    return base


# ----- datasets ----------------------------------------------------------------------------------------------------
class _Normalize:
    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        self.mean, self.std = mean.view(-1, 1, 1), std.view(-1, 1, 1)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        return (img.float().div(255) - self.mean) / self.std


class ClassifyTrainDataset(Dataset):
    """Sample number ``s`` -> (augmented, normalised image, label); see the module docstring."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, length: int, norm: _Normalize,
                 augment: bool = True, seed: int = 0):
        self.images, self.labels, self.length, self.norm = images, labels, length, norm
        self.augment, self.seed = augment, seed
        self._epoch, self._perm = -1, None

    def __len__(self) -> int:
        return self.length

    def index_of(self, s: int) -> int:
        n = len(self.labels)
        epoch = s // n
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(n, generator=g)
        return int(self._perm[s % n])

    def __getitem__(self, s: int) -> dict[str, Any]:
        i = self.index_of(int(s))
        img = self.images[i]
        if self.augment:
            rng = random.Random(self.seed * 1_000_003 + int(s))
            h, w = img.shape[-2:]
            top, left = rng.randint(0, 2 * PAD), rng.randint(0, 2 * PAD)
            img = F.pad(img, (PAD, PAD, PAD, PAD))[:, top:top + h, left:left + w]
            if rng.random() < 0.5:
                img = img.flip(-1)
        return {"image": self.norm(img), "label": self.labels[i]}


class ClassifyEvalDataset(Dataset):
    """A named evaluation set (role ``val`` or ``test``) of normalised images with labels and indices."""

    def __init__(self, name: str, images: torch.Tensor, labels: torch.Tensor, norm: _Normalize, role: str = VAL):
        self.name, self.images, self.labels, self.norm, self.role = name, images, labels, norm, role

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.norm(self.images[i]), "label": self.labels[i], "index": i}

    def item_name(self, i: int) -> str:
        return str(i)


# ----- the datamodule ----------------------------------------------------------------------------------------------
def validate_classify_config(cfg: Any) -> None:
    kind = cfg.get("kind", "cifar10")
    require(kind in KINDS, f"data.kind={kind!r} is not supported by the classification data; use one of "
                           f"{', '.join(KINDS)}")
    for key in ("batch_size", "eval_batch_size", "iters_per_epoch"):
        v = cfg.get(key, 1)
        require(isinstance(v, int) and not isinstance(v, bool) and v > 0,
                f"data.{key}={v!r} is impossible; use a positive integer")
    vs = cfg.get("val_split", 0.0)
    require(isinstance(vs, (int, float)) and 0 <= vs < 1,
            f"data.val_split={vs} is impossible; use the fraction of training images to hold out, 0 <= val_split < 1")


class ClassifyDataModule(EvalSetsMixin, L.LightningDataModule):
    """CIFAR-10 (or the embedded tiles) for ``model.module=classify``; ``evaluate.py`` evaluates with it too."""

    eval_module = "classify"  # the LightningModule that evaluates checkpoints on this data (evaluate.py)

    def __init__(self, cfg: Any, scale: int = 1, seed: int = 0):
        super().__init__()
        validate_classify_config(cfg)
        self.cfg, self.seed = cfg, int(seed)
        self.train_set: ClassifyTrainDataset | None = None
        self.eval_sets: list[ClassifyEvalDataset] = []
        self.classes: list[str] = []
        self.image_shape: tuple[int, ...] = (3, 32, 32)
        self._ready = False

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        c = self.cfg
        root = embedded_folders(c.get("root")) if c.get("kind") == "embedded" else c.get("root")
        data = load_cifar10(root)
        (tx, ty), (ex, ey) = data["train"], data["test"]
        self.classes, self.image_shape = list(data["classes"]), tuple(tx.shape[1:])
        name = c.get("name", "cifar10")
        vs = float(c.get("val_split", 0.0) or 0.0)
        if vs > 0:
            k = max(1, math.ceil(vs * len(ty)))
            require(k < len(ty), f"data.val_split={vs} holds out every training image; use a smaller fraction",
                    DataError)
            perm = torch.randperm(len(ty), generator=torch.Generator().manual_seed(0))  # the same split every run
            held, kept = perm[-k:].sort().values, perm[:-k].sort().values
            vx, vy, tx, ty = tx[held], ty[held], tx[kept], ty[kept]
        x = tx.float().div(255)
        norm = _Normalize(x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3)).clamp_min(1e-3))
        if vs > 0:
            self.eval_sets = [ClassifyEvalDataset(f"{name}_val", vx, vy, norm, VAL),
                              ClassifyEvalDataset(f"{name}_test", ex, ey, norm, TEST)]
        else:
            self.eval_sets = [ClassifyEvalDataset(f"{name}_test", ex, ey, norm, VAL)]
            if stage in (None, "fit"):
                log.info("data: the test set validates (picks the best checkpoint), as in the paper's table; "
                         "data.val_split=0.1 holds out training images instead")
        self.train_set = ClassifyTrainDataset(tx, ty, c.get("iters_per_epoch", 1) * c.get("batch_size", 1), norm,
                                              bool(c.get("augment", True)), self.seed)
        log.info("data: %d training and %d test images of %d classes, %s, from %s", len(ty), len(ey),
                 self.num_classes, "x".join(map(str, self.image_shape)), data["source"])
        self._ready = True

    # loaders: EvalSetsMixin builds them, with these batch sizes
    def train_batch_size(self) -> int:
        return int(self.cfg.get("batch_size", 128))

    def eval_loader_kwargs(self) -> dict:
        return {"batch_size": int(self.cfg.get("eval_batch_size", 500)), **self._loader_kwargs()}
