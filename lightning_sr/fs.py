"""Writing files so that a crash or a kill never leaves a half-written one: the one atomic-write helper.

Every file lightning-sr writes that a later run reads back (checkpoints, metrics.json, exported models,
cached decoded images, the embedded photographs) goes through :func:`atomic_write`: the bytes go to a
temporary file in the same folder, are flushed and fsynced, then renamed over the target (``os.replace``
is atomic on POSIX and Windows). On any failure the temporary file is removed and the old target stays.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def atomic_write(path: str | Path, data: bytes | str | Callable[[BinaryIO], Any]) -> Path:
    """Write ``data`` (bytes, text, or a function that writes into a binary file) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def promote(part: str | Path, path: str | Path) -> Path:
    """Put a file written elsewhere in the same folder (a checked download's ``.part``, written and resumed in
    pieces) in place atomically: fsync its bytes, then rename it over ``path``."""
    part, path = Path(part), Path(path)
    with open(part, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(part, path)
    return path


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` through :func:`atomic_write` (serialised in memory first: a pickling error writes nothing)."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write(path, buf.getbuffer())
