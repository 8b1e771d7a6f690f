"""The decoded-image cache: every image is decoded (and degraded) once, ever, then memory-mapped.

A DIV2K-sized training set decoded into each process's memory costs gigabytes per DDP rank. Instead,
:func:`cached_pair` writes the decoded HR array and its LR array as ``.npy`` files into a cache folder
the project owns (``$LSR_CACHE/decoded``, default ``~/.cache/lightning_sr/decoded``) and opens them
memory-mapped: every rank, every dataloader worker and every later run share the same pages of the
operating system's page cache, and nothing is decoded twice.

Entries are keyed by what determines their content: the image file (absolute path, size, modification
time), the LR source (an LR file, likewise, or the degradation and its parameters), the scale and the
cache format version. A changed file gets a new entry. Files are written atomically (``lightning_sr.fs``),
so ranks that fill the cache at the same time never read a half-written entry. Deleting the folder is
always safe; ``data.cache=memory`` keeps the arrays in the process instead (no files written).
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from lightning_sr.fs import atomic_write

VERSION = "1"
CACHE_MODES = ("disk", "memory")


def cache_root() -> Path:
    return Path(os.environ.get("LSR_CACHE", Path.home() / ".cache" / "lightning_sr")).expanduser()


def decoded_dir() -> Path:
    return cache_root() / "decoded"


def _file_id(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def entry_key(hr_path: Path, scale: int, lr_source: str) -> str:
    """``lr_source``: ``file:<id>`` of an LR file, or ``degrade:<kind>:<params>``."""
    text = "|".join([VERSION, _file_id(hr_path), str(scale), lr_source])
    return hashlib.sha1(text.encode()).hexdigest()


def lr_file_source(lr_path: Path) -> str:
    return f"file:{_file_id(lr_path)}"


def _save_npy(path: Path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    atomic_write(path, buf.getbuffer())


# np.load parses the .npy header with ast.literal_eval, which CPython 3.11 does not make thread-safe (concurrent
# calls fail now and then with "SystemError: AST constructor recursion depth mismatch"); the decode threads open
# their memory maps one at a time (cheap: the decoding itself stays parallel).
_HEADER_LOCK = threading.Lock()


def _open(path: Path) -> torch.Tensor:
    with _HEADER_LOCK:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    with warnings.catch_warnings():  # read-only memory map: tensors made from it are never written to
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(arr)


def cached_pair(key: str, make: Callable[[], tuple[torch.Tensor, torch.Tensor]], mode: str = "disk"
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(HR, LR) uint8 (3, H, W) tensors for ``key``: memory-mapped from the cache, or made by ``make()``
    (decode + degrade), written to the cache, then memory-mapped."""
    if mode == "memory":
        return make()
    folder = decoded_dir() / key[:2]
    hr_f, lr_f = folder / f"{key}.hr.npy", folder / f"{key}.lr.npy"
    if not (hr_f.is_file() and lr_f.is_file()):
        hr, lr = make()
        _save_npy(hr_f, hr.numpy())
        _save_npy(lr_f, lr.numpy())
    try:
        return _open(hr_f), _open(lr_f)
    except (OSError, ValueError):  # a damaged entry (disk trouble): rebuild it once
        hr, lr = make()
        _save_npy(hr_f, hr.numpy())
        _save_npy(lr_f, lr.numpy())
        return _open(hr_f), _open(lr_f)
