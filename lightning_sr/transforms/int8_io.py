"""The int8 artefact: a converted PT2E program saved as ``int8.pt2`` with its description (no Lightning here).

:func:`save_int8` writes the program (``torch.export.save``, dynamic batch/height/width, debugging metadata
dropped, JSON entries deflated) with its description inside (extra file :data:`META_FILE`) and beside it
(``int8.json``); :func:`read_int8` reads it back as a :class:`~lightning_sr.networks.graph.GraphGenerator`, with a
one-line WeightsError for a missing, corrupt or foreign file. ``checkpoint.load_generator`` and ``deploy`` read
int8 files through it.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.fx import GraphModule

from lightning_sr.errors import WeightsError
from lightning_sr.fs import atomic_write
from lightning_sr.networks.graph import GraphGenerator, example_input, export_dims

META_FILE = "lsr_int8.json"  # the artefact's description, inside the .pt2 (extra file) and beside it (int8.json)
FORMAT = 1
SAVED_META = ("val", "tensor_meta", "unbacked_bindings")  # what a node's metadata keeps in the artefact


def _strip_meta(ep: torch.export.ExportedProgram) -> None:
    """Drop what only debugging reads (stack traces, node provenance, module stacks) from the program's nodes: it
    is most of the serialised graph."""
    for n in ep.graph.nodes:
        for k in [k for k in n.meta if k not in SAVED_META]:
            del n.meta[k]


def _deflate_json(raw: bytes) -> bytes:
    """``torch.export.save``'s archive with its JSON entries (the graph) deflate-compressed: a third of a small
    model's file otherwise. Weights stay stored; ``torch.export.load`` reads both."""
    src = zipfile.ZipFile(io.BytesIO(raw))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for info in src.infolist():
            kind = zipfile.ZIP_DEFLATED if info.filename.endswith(".json") else zipfile.ZIP_STORED
            z.writestr(info, src.read(info.filename), compress_type=kind)
    return out.getvalue()


def save_int8(int8: GraphModule, path: str | Path, meta: dict[str, Any], channels: int = 3) -> dict[str, Any]:
    """Write ``int8`` to ``path`` (``torch.export.save``, re-exported with dynamic batch/height/width) with ``meta``
    inside (extra file :data:`META_FILE`) and beside it (``<stem>.json``); returns the meta written."""
    path = Path(path)
    ep = torch.export.export(int8, (example_input(channels),), dynamic_shapes={"x": export_dims()})
    _strip_meta(ep)
    meta = {"format": FORMAT, **meta}
    buf = io.BytesIO()
    torch.export.save(ep, buf, extra_files={META_FILE: json.dumps(meta, indent=1, default=str)})
    atomic_write(path, _deflate_json(buf.getvalue()))
    meta["size_mb"] = artefact_size_mb(path)
    atomic_write(path.with_suffix(".json"), json.dumps(meta, indent=2, default=str) + "\n")
    return meta


def read_int8(path: str | Path, what: str = "int8 model") -> tuple[nn.Module, dict[str, Any]]:
    """(GraphGenerator of the int8 program, its meta) from an ``int8.pt2``; one-line WeightsError when the file
    is missing, corrupt or not a lightning-sr int8 artefact."""
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise WeightsError(f"{what} {p} does not exist; check the path (<run dir>/checkpoints/int8.pt2)")
    if not zipfile.is_zipfile(p):
        raise WeightsError(f"{what} {p} is not a torch.export archive (corrupt or truncated); write it again "
                           f"with compression=qat or compression=ptq")
    # torchao registers the quantized_decomposed ops the program calls; imported here, not at the top, because
    # it takes ~1.4 s (measured on the Intel Xeon CPU, after torch) and every checkpoint reader imports this module
    import torchao.quantization.pt2e  # noqa: F401

    extra = {META_FILE: ""}
    try:
        ep = torch.export.load(str(p), extra_files=extra)
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise WeightsError(f"{what} {p} cannot be loaded ({type(e).__name__}: {first}); the file is corrupt or was "
                           f"written by another torch version: write it again with compression=qat or ptq") from None
    try:
        meta = json.loads(extra[META_FILE]) if extra[META_FILE] else None
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict) or "generator" not in meta:
        raise WeightsError(f"{p} is a torch.export program but not a lightning-sr int8 model (no {META_FILE}); "
                           f"write one with compression=qat or compression=ptq")
    gen = GraphGenerator.wrap(ep.module(), meta.get("outputs") or [""], attrs=meta.get("attrs"))
    gen.eval()
    return gen, meta


def artefact_size_mb(path: str | Path) -> float:
    return round(os.path.getsize(path) / 2**20, 4)


__all__ = ["FORMAT", "META_FILE", "artefact_size_mb", "read_int8", "save_int8"]
