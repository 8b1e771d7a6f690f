"""Reading offline W&B runs back, for tests: the ``run-<id>.wandb`` transaction log of each run.

wandb >= 0.2x no longer ships a Python reader (``wandb.sdk.internal.datastore``) and writes no
``files/wandb-summary.json`` in offline mode, so this parses the log itself: LevelDB log format
(a 7-byte file header ``:W&B`` + magic 0xBEE1 + version, then 32 KiB blocks of records with a
7-byte header: CRC32, length, type FULL/FIRST/MIDDLE/LAST), each record a ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HEADER = 7
BLOCK = 32768


def _payloads(path: Path):
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, buf = HEADER, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # block trailer
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:  # zero padding up to the end of the block
            pos += left
            continue
        payload = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            yield payload
        elif kind == 2:
            buf = payload
        elif kind == 3:
            buf += payload
        elif kind == 4:
            yield buf + payload
            buf = b""


def _set(d: dict, keys: list[str], value: Any) -> None:
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value


@dataclass
class OfflineRun:
    dir: Path
    id: str = ""
    name: str = ""
    group: str = ""
    project: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, dict] = field(default_factory=dict)   # define_metric records: name -> summary options
    exit_code: int | None = None

    @property
    def finished(self) -> bool:
        return self.exit_code is not None


def read_run(run_dir: Path) -> OfflineRun:
    from wandb.proto import wandb_internal_pb2 as pb

    files = sorted(Path(run_dir).glob("run-*.wandb"))
    assert files, f"no run-*.wandb in {run_dir}"
    run = OfflineRun(Path(run_dir))
    for payload in _payloads(files[0]):
        rec = pb.Record()
        rec.ParseFromString(payload)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            run.id, run.name, run.group, run.project, run.tags = (r.run_id, r.display_name, r.run_group, r.project,
                                                                   list(r.tags))
            for item in r.config.update:
                _set(run.config, [item.key] if item.key else list(item.nested_key), json.loads(item.value_json))
        elif kind == "config":
            for item in rec.config.update:
                _set(run.config, [item.key] if item.key else list(item.nested_key), json.loads(item.value_json))
        elif kind == "summary":
            for item in rec.summary.update:
                keys = [item.key] if item.key else list(item.nested_key)
                run.summary[keys[0] if len(keys) == 1 else "/".join(keys)] = json.loads(item.value_json)
        elif kind == "history":
            row = {}
            for item in rec.history.item:
                row[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
            run.history.append(row)
        elif kind == "metric":
            m = rec.metric
            run.metrics[m.name] = {f.name: v for f, v in m.summary.ListFields()}
        elif kind == "exit":
            run.exit_code = rec.exit.exit_code
    return run


def offline_runs(root: Path) -> list[OfflineRun]:
    """Every offline run under ``root`` (``**/wandb/offline-run-*``), oldest first."""
    return [read_run(d) for d in sorted(Path(root).glob("**/wandb/offline-run-*"))]
