"""Model cost: the one function behind every parameter count, MAC count, size and latency figure.

* ``params`` / ``params_trainable``: number of parameters (all / requires_grad).
* ``macs``: multiply-accumulates of one forward pass on a fixed LR input ``input_size``
  (C, H, W; default 3x128x128), counted with ``torch.utils.flop_counter`` (FLOPs / 2).
* ``size_mb``: bytes of the saved state dict (``torch.save``), in MiB.
* ``latency_ms``: median wall time of ``repeats`` forward passes on the CPU after ``warmup``
  passes, batch 1, with ``threads`` torch threads (stated in the result).

int8 models (a converted PT2E graph: int8 weight buffers, quantize/dequantize ops) count their int8 weights as
parameters, and are timed compiled (:func:`lightning_sr.ops.compile.compile_cpu`: inductor with freezing, which turns the reference
quantize/dequantize graph into oneDNN int8 kernels; run eagerly it is a slow fp32 emulation); the result then says
``"latency_mode": "compiled"``. :func:`compiled_latency_ms` times several models compiled, in alternated rounds
(int8 against fp32, same threads).
"""

from __future__ import annotations

import copy
import io
import platform
import statistics
import time
from collections.abc import Callable, Collection
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lightning_sr.ops.compile import compile_cpu, is_int8

# every key model_cost() returns, in this order: metrics.json, loggers, the W&B summary and the sweep report
# all read this list (per exit too)
COST_KEYS = ("params", "params_trainable", "macs", "macs_input", "size_mb", "latency_ms", "latency_threads")
DEFAULT_INPUT = (3, 128, 128)


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), to name beside every latency figure."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    n = sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
    if not trainable_only:  # a converted int8 model keeps its weights as int8 buffers
        n += sum(b.numel() for b in model.buffers() if b.dtype == torch.int8)
    return n


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
                   threads: int | None = None, compiled: bool = False) -> tuple[float, int]:
    """Median CPU latency (ms) of batch-1 forwards; returns (median_ms, threads used). ``compiled``: time
    :func:`compile_cpu` of the model (the first call, which compiles, is an extra warm-up)."""
    res, n = compiled_latency_ms({"m": model}, input_size, warmup, repeats, threads, compiled=compiled)
    return res["m"], n


def compiled_latency_ms(models: dict[str, nn.Module], input_size=(3, 128, 128), warmup: int = 2, repeats: int = 5,
                        threads: int | None = None, compiled: bool | Collection[str] = True,
                        reduce: Callable[[list[float]], float] = statistics.median) -> tuple[dict[str, float], int]:
    """({name: median ms}, threads) of batch-1 forwards of several models timed in alternated rounds (one forward
    of each per round), compiled (:func:`compile_cpu`) or eager, with the same ``threads``. ``compiled``: all
    (True), none (False), or the names of the models to compile (int8 programs beside eager fp32 models);
    ``reduce``: how a model's rounds become one figure (the median; ``min`` on a machine shared with other work)."""
    comp = set(models) if compiled is True else set() if compiled is False else set(compiled)
    fns = {}
    for k, model in models.items():
        m = copy.deepcopy(model).cpu().eval()
        fns[k] = compile_cpu(m) if k in comp else m
    x = torch.rand(1, *input_size)
    old = torch.get_num_threads()
    n = threads or old
    torch.set_num_threads(n)
    times: dict[str, list[float]] = {k: [] for k in fns}
    try:
        with torch.inference_mode():
            for k, f in fns.items():
                for _ in range(warmup + (1 if k in comp else 0)):  # a compiled model's first call compiles
                    f(x)
            for _ in range(repeats):
                for k, f in fns.items():
                    t0 = time.perf_counter()
                    f(x)
                    times[k].append((time.perf_counter() - t0) * 1000)
    finally:
        torch.set_num_threads(old)
    return {k: reduce(v) for k, v in times.items()}, n


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
        int8 = is_int8(model)
        ms, n = cpu_latency_ms(model, input_size, warmup, repeats, threads, compiled=int8)
        out.update(latency_ms=round(ms, 3), latency_threads=n)
        if int8:
            out["latency_mode"] = "compiled"
    return out


def cost_from_config(model: nn.Module, cfg: Any | None, latency: bool | None = None) -> dict[str, Any]:
    """``model_cost`` with the options of the ``cost`` config node (input_size, latency, repeats, threads).
    ``latency=False`` skips the timing (e.g. before/after a compression step): every other key is the same."""
    cfg = cfg or {}
    lat = bool(cfg.get("latency", True)) if latency is None else latency
    return model_cost(model, tuple(cfg.get("input_size", DEFAULT_INPUT)), lat,
                      int(cfg.get("warmup", 2)), int(cfg.get("repeats", 5)), cfg.get("threads"))
