"""Model cost: the one function behind every parameter count, MAC count, size and latency figure.

* ``params`` / ``params_trainable``: number of parameters (all / requires_grad).
* ``macs``: multiply-accumulates of one forward pass on a fixed LR input ``input_size``
  (C, H, W; default 3x128x128), counted with ``torch.utils.flop_counter`` (FLOPs / 2).
* ``size_mb``: bytes of the saved state dict (``torch.save``), in MiB.
* ``latency_ms``: median wall time of ``repeats`` forward passes on the CPU after ``warmup``
  passes, batch 1, with ``threads`` torch threads (stated in the result).
"""

from __future__ import annotations

import copy
import io
import statistics
import time
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

# every key model_cost() returns, in this order: metrics.json, loggers, the W&B summary and the sweep report
# all read this list (per exit too)
COST_KEYS = ("params", "params_trainable", "macs", "macs_input", "size_mb", "latency_ms", "latency_threads")
DEFAULT_INPUT = (3, 128, 128)


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_size=(3, 128, 128)) -> int:
    p = next(model.parameters(), None)
    x = torch.zeros(1, *input_size, device=p.device if p is not None else "cpu")
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    model.train(was_training)
    return int(fc.get_total_flops() // 2)


def state_dict_bytes(model: nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def cpu_latency_ms(model: nn.Module, input_size=(3, 128, 128), warmup: int = 2, repeats: int = 5,
                   threads: int | None = None) -> tuple[float, int]:
    """Median CPU latency (ms) of batch-1 forwards; returns (median_ms, threads used)."""
    m = copy.deepcopy(model).cpu().eval()
    x = torch.rand(1, *input_size)
    old = torch.get_num_threads()
    n = threads or old
    torch.set_num_threads(n)
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                m(x)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                m(x)
                times.append((time.perf_counter() - t0) * 1000)
    finally:
        torch.set_num_threads(old)
    return statistics.median(times), n


def model_cost(model: nn.Module, input_size=(3, 128, 128), latency: bool = True, warmup: int = 2,
               repeats: int = 5, threads: int | None = None) -> dict[str, Any]:
    input_size = tuple(int(v) for v in input_size)
    out: dict[str, Any] = {
        "params": count_params(model),
        "params_trainable": count_params(model, trainable_only=True),
        "macs": count_macs(model, input_size),
        "macs_input": "x".join(map(str, input_size)),
        "size_mb": round(state_dict_bytes(model) / 2**20, 4),
    }
    if latency:
        ms, n = cpu_latency_ms(model, input_size, warmup, repeats, threads)
        out.update(latency_ms=round(ms, 3), latency_threads=n)
    return out


def cost_from_config(model: nn.Module, cfg: Any | None, latency: bool | None = None) -> dict[str, Any]:
    """``model_cost`` with the options of the ``cost`` config node (input_size, latency, repeats, threads).
    ``latency=False`` skips the timing (e.g. before/after a compression step): every other key is the same."""
    cfg = cfg or {}
    lat = bool(cfg.get("latency", True)) if latency is None else latency
    return model_cost(model, tuple(cfg.get("input_size", DEFAULT_INPUT)), lat,
                      int(cfg.get("warmup", 2)), int(cfg.get("repeats", 5)), cfg.get("threads"))
