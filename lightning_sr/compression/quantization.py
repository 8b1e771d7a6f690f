"""What the two int8 callbacks share, QAT (:mod:`lightning_sr.compression.qat`) and PTQ
(:mod:`lightning_sr.compression.ptq`): options, checks, and the int8 finishing in one place.

Both capture the generator with ``torch.export`` (dynamic batch, height and width) and quantize it with torchao's
PT2E flow and :class:`lightning_sr.transforms.pt2e_quant.SRQuantizer` (x86 recipe plus SR-specific options); the
model definitions do not change: the captured graph wraps the generator (:class:`~lightning_sr.networks.graph.
GraphGenerator`) and takes its place.

:meth:`Quantization.finish` converts the prepared graph, writes ``int8.pt2`` (and ``int8.json``) beside
``last.ckpt``, evaluates it on every evaluation set with the module's own evaluation path (on the CPU, compiled with
inductor by default: the kernels that will run), measures its size on disk and its CPU latency against the fp32
model (both compiled, same threads, alternated), and puts it all into ``metrics.json["int8"]`` (the callback's
:meth:`~Quantization.summary`) and the ``compression`` log.

The technique must be the last compression callback (it quantizes the final model), and the module must declare
that its generator can be quantized (a ``supports_int8 = False`` class attribute says it cannot: the video module):
both checked in ``setup``.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from lightning_sr.callbacks import LastCheckpoint
from lightning_sr.checkpoint import load_int8
from lightning_sr.compression.base import (
    CompressionCallback,
    calibration_batch,
    generator_of,
    log_values,
    require_sr_module,
)
from lightning_sr.cost import compiled_latency_ms, cost_from_config, state_dict_bytes
from lightning_sr.errors import ConfigError, check, require
from lightning_sr.metrics_json import results_summary
from lightning_sr.networks import named_outputs
from lightning_sr.networks.graph import COPIED_ATTRS
from lightning_sr.transforms import int8_io

try:  # qat.py and ptq.py take them from here
    from lightning_sr.transforms import eager_quant, pt2e_quant
except ImportError as _e:  # torchao is optional until a quantization callback is built: require_torchao() says so
    if not str(_e.name or "").startswith("torchao"):
        raise
    eager_quant = quant = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

ARTEFACT = "int8.pt2"
TORCHAO = "torchao"


def require_torchao(key: str = "compression=qat|ptq") -> None:
    """One-line ConfigError when torchao (the PT2E quantization flow) cannot be imported; called before anything
    is trained or captured."""
    try:
        importlib.import_module(TORCHAO)
    except ImportError as e:
        raise ConfigError(f"{key} needs torchao (PT2E int8 quantization), which cannot be imported ({e}); install "
                          f"it with pip install 'torchao>=0.18' (the project's pyproject.toml lists it)") from None


class Quantization(CompressionCallback):
    """What QAT and PTQ share: options, checks, conversion, the artefact, the int8 evaluation."""

    name = "quantization"
    qat = False

    def __init__(self, shuffle_int8: bool = True, act_int8: bool = True, skip_fp32: bool = True,
                 fp32_layers: list[str] | None = None, reduce_range: bool | str = "auto", compile: bool = True,
                 evaluate: bool = True, eval_images: int | None = None):
        key = f"compression.{self.name}"
        require_torchao(f"compression={self.name}")
        self.settings = pt2e_quant.QuantSettings(shuffle_int8, act_int8, skip_fp32, list(fp32_layers or []), reduce_range)
        pt2e_quant.check_settings(key, self.settings)
        check(isinstance(compile, bool), f"{key}.compile", compile, "must be true or false")
        super().__init__(evaluate, eval_images)
        self.compile = compile
        self.results: dict[str, Any] | None = None  # the int8 model's figures: metrics.json["int8"]
        self.finished = False

    def config(self) -> dict[str, Any]:
        return {k: v for k, v in self.settings.__dict__.items()} | {"compile": self.compile}

    # ----- checks -----------------------------------------------------------------------------------------------
    def check_order(self, trainer: L.Trainer) -> None:
        """The quantization callback quantizes the final model: no compression callback may come after it."""
        comp = [cb for cb in trainer.callbacks if isinstance(cb, CompressionCallback)]
        later = comp[comp.index(self) + 1:] if self in comp else []
        require(not later, f"{self.key} must be the last compression technique (it quantizes the final model), but "
                           f"{', '.join(cb.name for cb in later)} comes after it; write compression=["
                           f"{', '.join([cb.name for cb in comp if cb is not self] + [self.name])}]")

    def check_module(self, pl_module: L.LightningModule) -> nn.Module:
        """The generator to quantize; one line when the module declares it cannot be (``supports_int8 = False``)."""
        require(getattr(pl_module, "supports_int8", True),
                f"{self.key} quantizes image generators; the video module ({type(pl_module).__name__}) is not "
                f"supported (use model=srresnet, srgan or multi_exit)")
        require_sr_module(pl_module, self.key)
        return generator_of(pl_module, self.key)

    def preflight(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check_order(trainer)
        self.check_module(pl_module)

    def check_coverage(self, prepared, gen: nn.Module) -> list[str]:
        """ConfigError naming the layers when the quantizer covers none of them; the uncovered ones otherwise."""
        covered, missed = pt2e_quant.covered_layers(prepared, gen)
        fp32 = self.settings.fp32_layers
        require(bool(covered), f"{self.key}: the quantizer covers none of the model's layers ("
                               f"{', '.join(f'{n} ({type(gen.get_submodule(n)).__name__})' for n in missed[:8])}"
                               f"{' ...' if len(missed) > 8 else ''}"
                               f"{'; fp32_layers=' + str(fp32) if fp32 else ''}); x86 int8 covers Conv2d and "
                               f"Linear: quantize a model made of them" + (" or shorten fp32_layers" if fp32 else ""))
        outside = [n for n in missed if not any(n == p or n.startswith(p + ".") for p in fp32)]
        if outside:
            log.warning("%s: layers left in fp32 (the x86 recipe does not cover them): %s", self.key,
                        ", ".join(outside))
        return missed

    # ----- the int8 model -----------------------------------------------------------------------------------------
    def open_entry(self, trainer: L.Trainer, pl_module: L.LightningModule, **extra: Any) -> None:
        """The log entry of this run's quantization, with the fp32 model's figures before it starts."""
        self.log_entry({"technique": self.name, **self.config(), "before": self.measure(trainer, pl_module), **extra})

    def artefact_path(self, trainer: L.Trainer) -> tuple[Path, Path]:
        """(int8.pt2, the fp32 last.ckpt it comes from) in the run's checkpoints folder."""
        last = next((cb.path for cb in trainer.callbacks if isinstance(cb, LastCheckpoint)), None)
        folder = Path(last).parent if last else Path(trainer.default_root_dir) / "checkpoints"
        return folder / ARTEFACT, Path(last) if last else folder / "last.ckpt"

    def finish(self, trainer: L.Trainer, pl_module: L.LightningModule, prepared, outputs: list[str],
               details: dict[str, Any]) -> None:
        """Convert ``prepared``, write the artefact, evaluate and measure it; ``pl_module.generator`` is fp32."""
        int8 = pt2e_quant.convert(prepared.cpu())
        if self.qat:  # the int8 program is the network that was trained: its 8-bit output against the graph's
            details = {**details, "int8_vs_fake_quant": self.compare_with_fake_quant(trainer, pl_module, prepared,
                                                                                     int8)}
        rows = pt2e_quant.layer_precisions(int8)
        layers = pt2e_quant.summarize_layers(rows)
        path, source = self.artefact_path(trainer)
        gen = pl_module.generator
        meta = {"technique": self.name, "generator": dict(pl_module.generator_spec), "outputs": outputs,
                "attrs": {k: getattr(gen, k) for k in COPIED_ATTRS if isinstance(getattr(gen, k, None),
                                                                                  (int, str, list))},
                "source_checkpoint": str(source), "init_from": (pl_module.hparams or {}).get("init_from"),
                "global_step": int(trainer.global_step), "quantizer": self.settings.describe(self.qat),
                **details, "layers": rows}
        if trainer.is_global_zero:
            int8_io.save_int8(int8, path, meta)
        trainer.strategy.barrier()
        int8_gen, _ = load_int8(path, what="int8 model")  # what evaluate.py will get: the file, not the object
        results = self.evaluate_int8(trainer, pl_module, int8_gen, path)
        results.update(layers=layers, quantizer=self.settings.describe(self.qat), **details)
        self.results = results
        if self.entry is not None:
            self.entry["after"] = {k: results[k] for k in ("params", "size_mb", "psnr", "sets", "latency_ms")
                                   if k in results}
            self.entry.update(artefact=str(path), layers=layers)
        self.finished = True
        self._log(trainer, results)
        log.info("%s: int8 model %s: %s, %.3f MB (fp32 %.3f MB)%s", self.name, path,
                 f"PSNR {results['psnr']:.3f} dB" if "psnr" in results else "not evaluated", results["size_mb"],
                 results["fp32_size_mb"], f", {results['latency_ms']:.1f} ms vs fp32 {results['fp32_latency_ms']:.1f}"
                 f" ms (compiled, {results['latency_threads']} threads)" if "latency_ms" in results else "")

    @staticmethod
    def compare_with_fake_quant(trainer: L.Trainer, pl_module: L.LightningModule, prepared, int8) -> dict[str, Any]:
        """Max and mean difference, in 8-bit output levels, between the fake-quantized graph (eval mode) and the
        converted int8 program on a centre crop of the first validation image (the first output)."""
        try:
            lr, _ = calibration_batch(trainer, pl_module, images=1, crop=48)
        except ConfigError:
            return {}
        was = getattr(prepared, "_exported_training", True)
        pt2e_quant.set_mode(prepared, False)
        with torch.no_grad():
            a, b = (out[0] if isinstance(out, (tuple, list)) else out
                    for out in (prepared(lr.cpu()), int8(lr.cpu())))
        pt2e_quant.set_mode(prepared, bool(was))
        levels = ((a.clamp(0, 1) * 255).round() - (b.clamp(0, 1) * 255).round()).abs()
        return {"max_8bit": float(levels.max()), "mean_8bit": round(float(levels.mean()), 4),
                "input": "x".join(map(str, lr.shape[1:]))}

    def evaluate_int8(self, trainer: L.Trainer, pl_module: L.LightningModule, int8_gen: nn.Module,
                      path: Path) -> dict[str, Any]:
        """Size, latency (compiled int8 vs compiled fp32) and quality of the int8 model, on the CPU."""
        cfg = dict(getattr(pl_module, "cost_cfg", None) or {})
        fp32 = pl_module.generator
        c = cost_from_config(int8_gen, cfg, latency=False)
        out: dict[str, Any] = {"artefact": str(path), "mode": "compiled" if self.compile else "reference (eager)",
                               "params": c["params"], "macs": c["macs"], "macs_input": c["macs_input"],
                               "size_mb": round(path.stat().st_size / 2**20, 4),
                               "weights_mb": round(state_dict_bytes(int8_gen) / 2**20, 4),
                               "fp32_size_mb": round(state_dict_bytes(fp32) / 2**20, 4)}
        out["size_ratio"] = round(out["size_mb"] / out["fp32_size_mb"], 4)
        if cfg.get("latency", True) and self.compile:
            size = tuple(int(v) for v in cfg.get("input_size", (3, 128, 128)))
            ms, n = compiled_latency_ms({"int8": int8_gen, "fp32": fp32}, size, int(cfg.get("warmup", 2)),
                                        int(cfg.get("repeats", 5)), cfg.get("threads"))
            out.update(latency_ms=round(ms["int8"], 3), fp32_latency_ms=round(ms["fp32"], 3),
                       latency_ratio=round(ms["int8"] / ms["fp32"], 4), latency_threads=n,
                       latency_input="x".join(map(str, size)))
        dm = trainer.datamodule
        sets = dm.sets("test") if dm is not None and hasattr(dm, "sets") else []
        if self.evaluate and sets:
            run = int8_gen.compiled() if self.compile else int8_gen

            def fn(lr: torch.Tensor) -> dict[str, torch.Tensor]:
                return {k: v.to(lr.device) for k, v in named_outputs(run, lr.detach().cpu()).items()}

            out.update(results_summary(pl_module.evaluate_datasets(sets, fn=fn, max_images=self.eval_images)))
        return out

    def _log(self, trainer: L.Trainer, results: dict[str, Any]) -> None:
        flat = {f"int8/{k}": float(results[k]) for k in ("psnr", "ssim", "lpips", "size_mb", "latency_ms",
                                                          "fp32_latency_ms", "latency_ratio", "size_ratio")
                if k in results}
        flat.update({f"int8/{s}/{m}": float(v) for s, ms in (results.get("sets") or {}).items()
                     for m, v in ms.items() if m != "images"})
        log_values(trainer, flat, "int8")

    # ----- declared hooks and state -----------------------------------------------------------------------------
    def summary(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """The compression entry and ``int8``: the int8 model's size, latency and quality."""
        return {**super().summary(trainer, pl_module), **({"int8": self.results} if self.results else {})}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "finished": self.finished}



__all__ = ["ARTEFACT", "TORCHAO", "ConfigError", "Quantization", "eager_quant", "quant", "require_torchao"]
