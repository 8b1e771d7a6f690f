"""``manifest.json`` in every run folder (train and evaluate): what the run ran on, so that two runs can be told
apart after the fact and latencies are only compared between runs of one machine.

* ``packages``: ``{distribution: version}`` of every installed distribution (``importlib.metadata``: a lock of the
  environment, as ``pip freeze`` lists it), ``python``, ``torch``, ``cuda`` / ``cudnn`` (torch's build);
* ``cpu``: model name (:func:`lightning_sr.cost.cpu_name`), logical cores, and the instruction-set flags that
  change the speed of inference kernels (AVX2, AVX-512, VNNI, AMX... from ``/proc/cpuinfo``);
* ``gpu``: the CUDA device names (empty without one);
* ``machine``: one line naming the machine (CPU model, GPU): the report writes it beside every latency and
  refuses to compare latencies of different machines;
* ``data``: per data set (training and every evaluation set) the number of files and a checksum. The checksum is
  the sha256 of the sorted list of ``relative path, size, sha256 of the content`` of its HR (and LR) files when
  the set is at most :data:`CONTENT_HASH_MAX_BYTES` in all (``"method": "content"``), else of ``relative path,
  size`` only (``"method": "names+sizes"``: cheap for DIV2K-sized sets, stable across copies, blind to in-place
  edits). Data that is not a folder of images (video, CIFAR-10) is recorded as ``"unavailable"`` with the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from lightning_sr.cost import cpu_name
from lightning_sr.data.datamodule import resolve_sets
from lightning_sr.fs import atomic_write
from lightning_sr.ops.image_io import list_images

CONTENT_HASH_MAX_BYTES = 64 * 2**20
# /proc/cpuinfo flags that matter for CPU inference speed (fp32 SIMD width, int8 dot products, AMX tiles)
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
             "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "asimd", "sve")
MANIFEST = "manifest.json"


def cpu_flags() -> list[str]:
    """The :data:`CPU_FLAGS` this CPU has (``/proc/cpuinfo`` ``flags``/``Features``; empty when unreadable)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    have = set(line.split(":", 1)[1].split())
                    return [fl for fl in CPU_FLAGS if fl in have]
    except OSError:
        pass
    return []


def packages() -> dict[str, str]:
    from importlib.metadata import distributions

    out: dict[str, str] = {}
    for d in distributions():
        name = d.metadata.get("Name")
        if name:
            out[str(name)] = str(d.version)
    return dict(sorted(out.items(), key=lambda kv: kv[0].lower()))


def gpus() -> list[str]:
    try:
        import torch

        if torch.cuda.is_available():
            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:
        pass
    return []


def machine_name(cpu: str, gpu: list[str]) -> str:
    return cpu + (f" + {len(gpu)}x {gpu[0]}" if gpu else "")


def _file_lines(files: list[Path], base: Path, content: bool) -> list[str]:
    lines = []
    for f in files:
        try:
            rel = f.relative_to(base)
        except ValueError:
            rel = Path(f.name)
        line = f"{rel.as_posix()}\t{f.stat().st_size}"
        if content:
            line += "\t" + hashlib.sha256(f.read_bytes()).hexdigest()
        lines.append(line)
    return sorted(lines)


def files_checksum(files: list[Path], base: Path) -> dict[str, Any]:
    """``{"files": n, "bytes": total, "method": content|names+sizes, "sha256": ...}`` of a list of files."""
    total = sum(f.stat().st_size for f in files)
    content = total <= CONTENT_HASH_MAX_BYTES
    digest = hashlib.sha256("\n".join(_file_lines(files, base, content)).encode()).hexdigest()
    return {"files": len(files), "bytes": total, "method": "content" if content else "names+sizes", "sha256": digest}


def data_checksums(data_cfg: Any, scale: int, training: bool) -> dict[str, Any]:
    """Checksums of the data sets a run reads (module docstring); ``{"unavailable": reason}`` when the data is not
    a set of image folders."""
    try:
        train, evals = resolve_sets(data_cfg, scale, training=training)
        out: dict[str, Any] = {}
        for role, s in ([("train", train)] if train is not None and training else []) + [("eval", e) for e in evals]:
            files = s.files()
            hr = Path(s.hr_dir)
            entry = {"role": role if role == "train" else s.role, "hr_dir": str(s.hr_dir), **files_checksum(files, hr)}
            if s.lr_dir and Path(s.lr_dir).is_dir():
                lr = list_images(s.lr_dir, f"LR folder of {s.name!r}", "<dir>/*.png")
                entry["lr"] = files_checksum(lr, Path(s.lr_dir))
            out[s.name if role != "train" else "train"] = entry
        return out
    except Exception as e:  # video/classification data, or data that went missing: record why, never fail a run
        return {"unavailable": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}


def build_manifest(cfg: Any | None = None, training: bool = True) -> dict[str, Any]:
    import torch

    cpu = cpu_name()
    gpu = gpus()
    out: dict[str, Any] = {
        "machine": machine_name(cpu, gpu),
        "cpu": {"model": cpu, "flags": cpu_flags(), "logical_cores": os.cpu_count(), "arch": platform.machine()},
        "gpu": gpu,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "packages": packages(),
    }
    if cfg is not None and cfg.get("data") is not None:
        out["data"] = data_checksums(cfg.data, int(cfg.get("scale", 4)), training)
    return out


def write_manifest(run_dir: Path, cfg: Any | None = None, training: bool = True) -> Path:
    """Write ``<run_dir>/manifest.json`` (rank zero only under DDP: the caller decides)."""
    path = Path(run_dir) / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(build_manifest(cfg, training), indent=2, default=str) + "\n")
    return path


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(run_dir) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


__all__ = ["CONTENT_HASH_MAX_BYTES", "CPU_FLAGS", "MANIFEST", "build_manifest", "cpu_flags", "data_checksums",
           "files_checksum", "read_manifest", "write_manifest"]
