"""Quantization to a real int8 model: quantization-aware training (``compression=qat``) and post-training
quantization (``compression=ptq``), both ending in an int8 program that is smaller and faster on a CPU.

Both capture the generator with ``torch.export`` (dynamic batch, height and width) and quantize it with torchao's
PT2E flow and :class:`lightning_sr.transforms.quant.SRQuantizer` (x86 recipe plus SR-specific options); the
model definitions do not change: the captured graph wraps the generator (:class:`~lightning_sr.models.graph.
GraphGenerator`) and takes its place.

* :class:`QAT`, in ``setup(stage="fit")`` (after every earlier compression callback, before the optimiser is
  built): capture in training form, ``prepare_qat_pt2e``, ``pl_module.generator`` becomes the fake-quantized graph;
  training goes on as usual (every module: SR, SRGAN's generator, multi-exit with every exit). Observers stop after
  ``freeze_observers_after`` steps and batch norm uses its running statistics after ``freeze_bn_after`` steps.
  Validation sees the fake-quantized model. At the end of fit the graph is converted (``convert_pt2e``) and
  the generator goes back to the fp32 model with the trained weights (the run's final metrics).
  With channel sparsity still learning gates at step 0 (``start_step: 0`` and a mid-run ``prune_at_step``, as in
  ``experiment=gan_slimming``), the gated generator is fake-quantized eagerly from the first step
  (:mod:`lightning_sr.transforms.eager_quant`, the same fake quantizers); at the removal they come off, the slim
  generator is captured and prepared, and the activation ranges learned so far are carried into the graph, which
  trains on to the end. ``start_step >= prune_at_step`` keeps the late join (fp32 until the removal).
* :class:`PTQ`: no training. At the start of training it stops the trainer; at the end of fit it captures the
  generator, calibrates it on ``calib_batches`` training batches (or validation images) and converts it.

Then both write ``int8.pt2`` (and ``int8.json``) beside ``last.ckpt``, evaluate it on every evaluation set with
the module's own evaluation path (on the CPU, compiled with inductor by default: the kernels that will run),
measure its size on disk and its CPU latency against the fp32 model (both compiled, same threads, alternated), and
put it all into ``metrics.json["int8"]`` (``pl_module.int8_results``) and the ``compression`` log.

The technique must be the last compression callback (it quantizes the final model): checked in ``setup``.
A checkpoint taken during QAT holds the prepared graph's state; a resumed run captures and prepares the same graph
again in ``setup`` before Lightning loads it (``trainer.ckpt_path``), and re-applies the freezing it had reached.
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
from lightning_sr.checkpoint import QAT_KEY, load_fp32_state, load_int8
from lightning_sr.compression.common import (
    append_log,
    calibration_batch,
    evaluate_psnr,
    generator_of,
    log_values,
    rebuild_optimizers,
    require_sr_module,
    restore_entry,
    resumed_state,
    short,
)
from lightning_sr.cost import compiled_latency_ms, cost_from_config, state_dict_bytes
from lightning_sr.errors import ConfigError, check, require
from lightning_sr.models import build_generator, named_outputs
from lightning_sr.models.graph import COPIED_ATTRS, GraphGenerator
from lightning_sr.modules.video import VideoSRModule
from lightning_sr.summary import results_summary
from lightning_sr.transforms import int8_io

try:
    from lightning_sr.transforms import eager_quant, quant
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


def _is_compression(cb: L.Callback) -> bool:
    return type(cb).__module__.startswith("lightning_sr.compression.")


def _cb_name(cb: L.Callback) -> str:
    return str(getattr(cb, "name", type(cb).__name__))


class Quantization(L.Callback):
    """What QAT and PTQ share: options, checks, conversion, the artefact, the int8 evaluation."""

    name = "quantization"
    qat = False

    def __init__(self, shuffle_int8: bool = True, act_int8: bool = True, skip_fp32: bool = True,
                 fp32_layers: list[str] | None = None, reduce_range: bool | str = "auto", compile: bool = True,
                 evaluate: bool = True, eval_images: int | None = None):
        key = f"compression.{self.name}"
        require_torchao(f"compression={self.name}")
        self.settings = quant.QuantSettings(shuffle_int8, act_int8, skip_fp32, list(fp32_layers or []), reduce_range)
        quant.check_settings(key, self.settings)
        check(isinstance(compile, bool), f"{key}.compile", compile, "must be true or false")
        check(isinstance(evaluate, bool), f"{key}.evaluate", evaluate, "must be true or false")
        check(eval_images is None or (isinstance(eval_images, int) and eval_images > 0), f"{key}.eval_images",
              eval_images, "is impossible; use null (all) or an integer > 0")
        self.compile, self.evaluate, self.eval_images = compile, evaluate, eval_images
        self.entry: dict[str, Any] | None = None
        self.finished = False

    @property
    def key(self) -> str:
        return f"compression.{self.name}"

    @property
    def state_key(self) -> str:
        return self._generate_state_key(name=self.name)

    def config(self) -> dict[str, Any]:
        return {k: v for k, v in self.settings.__dict__.items()} | {"compile": self.compile}

    # ----- checks -----------------------------------------------------------------------------------------------
    def check_order(self, trainer: L.Trainer) -> None:
        """The quantization callback quantizes the final model: no compression callback may come after it."""
        comp = [cb for cb in trainer.callbacks if _is_compression(cb)]
        later = comp[comp.index(self) + 1:] if self in comp else []
        require(not later, f"{self.key} must be the last compression technique (it quantizes the final model), but "
                           f"{', '.join(_cb_name(cb) for cb in later)} comes after it; write compression=["
                           f"{', '.join([_cb_name(cb) for cb in comp if cb is not self] + [self.name])}]")

    def check_module(self, pl_module: L.LightningModule) -> nn.Module:
        require(not isinstance(pl_module, VideoSRModule),
                f"{self.key} quantizes image generators; the video module ({type(pl_module).__name__}) is not "
                f"supported (use model=srresnet, srgan or multi_exit)")
        require_sr_module(pl_module, self.key)
        return generator_of(pl_module, self.key)

    def check_coverage(self, prepared, gen: nn.Module) -> list[str]:
        """ConfigError naming the layers when the quantizer covers none of them; the uncovered ones otherwise."""
        covered, missed = quant.covered_layers(prepared, gen)
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

    # ----- measurements -----------------------------------------------------------------------------------------
    def measure_fp32(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        out: dict[str, Any] = cost_from_config(pl_module.generator, getattr(pl_module, "cost_cfg", None),
                                               latency=False)
        if self.evaluate:
            out.update(evaluate_psnr(trainer, pl_module, self.eval_images))
        return out

    def artefact_path(self, trainer: L.Trainer) -> tuple[Path, Path]:
        """(int8.pt2, the fp32 last.ckpt it comes from) in the run's checkpoints folder."""
        last = next((cb.path for cb in trainer.callbacks if isinstance(cb, LastCheckpoint)), None)
        folder = Path(last).parent if last else Path(trainer.default_root_dir) / "checkpoints"
        return folder / ARTEFACT, Path(last) if last else folder / "last.ckpt"

    def finish(self, trainer: L.Trainer, pl_module: L.LightningModule, prepared, outputs: list[str],
               details: dict[str, Any]) -> None:
        """Convert ``prepared``, write the artefact, evaluate and measure it; ``pl_module.generator`` is fp32."""
        int8 = quant.convert(prepared.cpu())
        if self.qat:  # the int8 program is the network that was trained: its 8-bit output against the graph's
            details = {**details, "int8_vs_fake_quant": self.compare_with_fake_quant(trainer, pl_module, prepared,
                                                                                     int8)}
        rows = quant.layer_precisions(int8)
        layers = quant.summarize_layers(rows)
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
        pl_module.int8_results = results
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
        quant.set_mode(prepared, False)
        with torch.no_grad():
            a, b = (out[0] if isinstance(out, (tuple, list)) else out
                    for out in (prepared(lr.cpu()), int8(lr.cpu())))
        quant.set_mode(prepared, bool(was))
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

    # ----- state -----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"entry": self.entry, "finished": self.finished}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.entry = restore_entry(self.entry, state_dict.get("entry"))


class QAT(Quantization):
    """Quantization-aware training: the generator trains fake-quantized, then converts to int8 (module docstring)."""

    name = "qat"
    qat = True

    def __init__(self, freeze_observers_after: int | None = None, freeze_bn_after: int | None = None,
                 start_step: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        for k, v in (("freeze_observers_after", freeze_observers_after), ("freeze_bn_after", freeze_bn_after)):
            check(v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1), f"{self.key}.{k}", v,
                  "is impossible; use null (never) or a number of QAT steps >= 1 (observers need data first)")
        check(isinstance(start_step, int) and not isinstance(start_step, bool) and start_step >= 0,
              f"{self.key}.start_step", start_step, "is impossible; use 0 (quantize from the start) or the step at "
              "which QAT joins (after a warm-up)")
        self.freeze_observers_after, self.freeze_bn_after = freeze_observers_after, freeze_bn_after
        self.join_step = int(start_step)  # configured: the step QAT joins at
        self.start_step: int | None = None  # the step the generator was actually captured at (None: not yet)
        self.frozen = {"observers": False, "bn": False}
        self.outputs: list[str] = []
        self.eager = False  # fake-quantizing the gated generator eagerly until the channel removal
        self.eager_states: dict[str, Any] | None = None  # its fake quantizers' ranges, once taken off
        self._resumed_attached: dict[str, Any] | None = None  # their ranges in a checkpoint taken while attached
        self._gen_ref: nn.Module | None = None

    def config(self) -> dict[str, Any]:
        return {**super().config(), "freeze_observers_after": self.freeze_observers_after,
                "freeze_bn_after": self.freeze_bn_after, "start_step": self.join_step}

    def prepared(self, pl_module: L.LightningModule):
        gen = getattr(pl_module, "generator", None)
        return gen.captured if isinstance(gen, GraphGenerator) and self.start_step is not None else None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:

        if stage != "fit" or self.prepared(pl_module) is not None:
            return
        self.check_order(trainer)
        self.check_module(pl_module)
        self.check_after_structure(trainer)
        resume = trainer.ckpt_path
        if resume:
            self.load_state_dict(resumed_state(resume, self.state_key))
        if self.eager and self.eager_states is not None and self.start_step is None:
            return  # resumed between the channel removal and the capture: the next batch captures, as it would have
        if self.start_step is None and self._gates_pending(trainer):  # quantized from step 0, gates learned eagerly
            self.eager = True
            self.start_eager(trainer, pl_module, resumed=bool(resume))
            return
        if self.start_step is None and self.join_step > 0:
            log.info("%s: QAT joins at step %d (until then the generator trains in fp32)", self.name, self.join_step)
            return  # captured in on_train_batch_start when the step is reached
        self.capture(trainer, pl_module, resumed=bool(resume) and self.start_step is not None)

    @staticmethod
    def _structure_changers(trainer: L.Trainer) -> list:
        """Callbacks that still change the generator's structure mid-run (they declare ``changes_structure_until``)."""
        return [cb for cb in trainer.callbacks if getattr(cb, "changes_structure_until", lambda: None)() is not None]

    def _gates_pending(self, trainer: L.Trainer) -> bool:
        return self.join_step == 0 and bool(self._structure_changers(trainer))

    def start_eager(self, trainer: L.Trainer, pl_module: L.LightningModule, resumed: bool) -> None:
        """Fake-quantize the (gated) generator in place until the structure is final."""
        gen = self.check_module(pl_module)
        gen.to(trainer.strategy.root_device)
        if not resumed:
            self.open_entry(trainer, pl_module, fake_quant_from_step=int(trainer.global_step))
        if self.entry is not None:
            append_log(pl_module, self.entry)
        n = eager_quant.attach(gen, self.settings)
        self._gen_ref = gen
        if resumed and self._resumed_attached:
            eager_quant.load_states(gen, self._resumed_attached)
        log.info("%s: %d layers of the gated generator fake-quantized from step %d (eager) until the channel "
                 "removal", self.name, n, trainer.global_step)

    def open_entry(self, trainer: L.Trainer, pl_module: L.LightningModule, **extra: Any) -> None:
        """The log entry of this run's quantization, with the fp32 model's figures before it starts."""
        if not (pl_module.hparams or {}).get("init_from") and not getattr(pl_module, "compression_log", None):
            log.warning("%s acts on an untrained generator (no model.init_from=PATH)", self.key)
        self.entry = {"technique": self.name, **self.config(), "before": self.measure_fp32(trainer, pl_module),
                      **extra}

    def before_structure_change(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Declared hook, called by a callback about to change the generator's structure: take the eager fake
        quantizers off (channel surgery and its tracing see the plain model); their ranges are kept."""
        if self.eager and self.eager_states is None:
            self.eager_states = eager_quant.detach(pl_module.generator)

    def check_after_structure(self, trainer: L.Trainer) -> None:
        """QAT joins after every structural change: mid-run channel removal (channel sparsity) must come first, and
        a generator replaced mid-run cannot be re-wrapped by DDP."""
        spb = max(1, int(getattr(trainer.lightning_module, "optimizer_steps_per_batch", 1) or 1))
        first = -(-self.join_step // spb) * spb  # batches start at multiples of the optimiser steps per batch
        require(not trainer.max_steps or trainer.max_steps < 0 or first < trainer.max_steps,
                f"{self.key}.start_step={self.join_step} is not before the last batch (trainer.max_steps="
                f"{trainer.max_steps}, {spb} optimiser step(s) per batch): QAT would never train; use a smaller "
                f"start_step (0: from the start)")
        require(not (self.join_step > 0 and trainer.world_size > 1),
                f"{self.key}.start_step={self.join_step} replaces the generator in the middle of a multi-process run "
                f"(DDP wraps it once); use start_step=0, or join on one device")
        for cb in trainer.callbacks:
            until = getattr(cb, "changes_structure_until", lambda: None)()
            if until is None or cb is self:
                continue
            key = f"compression.{_cb_name(cb)}.prune_at_step"
            if self.join_step == 0:  # fake-quantized eagerly until the removal, then captured: a batch must follow
                first = -(-int(until) // spb) * spb
                require(until > 0 and first < (trainer.max_steps or 0),
                        f"{self.key}.start_step=0 quantizes the gated network from the start and captures it after "
                        f"the channel removal, but {key}={until if until > 0 else 'null'} removes the channels at "
                        f"the last batch (trainer.max_steps={trainer.max_steps}): set {key}=N before the last batch "
                        f"(e.g. 75 % of the run) so the slim int8 network trains quantized after it")
                continue
            require(until > 0 and until <= self.join_step,
                    f"{self.key}.start_step={self.join_step} would quantize while channel gates are still learned"
                    f" ({key}={'null' if until <= 0 else until}: the channels are removed "
                    f"{'at the last step' if until <= 0 else f'at step {until}'}), and the x86 quantizer cannot "
                    f"annotate gated convolutions; use {self.key}.start_step=0 (fake-quantized from the start, "
                    f"eagerly until the removal) or set {key}=N and {self.key}.start_step>=N (late join)")

    def capture(self, trainer: L.Trainer, pl_module: L.LightningModule, resumed: bool) -> None:
        """Capture the generator, prepare it for QAT and put the fake-quantized graph in its place."""
        gen = self.check_module(pl_module)
        device = trainer.strategy.root_device
        resume = trainer.ckpt_path if resumed else None
        if not resumed:
            if self.eager:  # the entry was opened when fake quantization started (the log holds it already)
                self.entry = {**(self.entry or {}), "captured_at_step": int(trainer.global_step)}
            else:
                gen.to(device)
                self.open_entry(trainer, pl_module)
            self.start_step = int(trainer.global_step)
        if self.entry is not None:
            append_log(pl_module, self.entry)
        gm, self.outputs, features = quant.capture(gen.cpu(), training=True)
        prepared = quant.prepare(gm, self.settings, qat=True)
        if self.eager_states is not None and not resumed:  # the ranges the gated network learned go on
            carried = eager_quant.carry_ranges(prepared, self.eager_states)
            eager_quant.observe_weights(prepared)  # the folded, pruned weights' own per-channel ranges
            if self.entry is not None:
                self.entry["ranges_carried"] = len(carried)
            log.info("%s: activation ranges of %d layers carried from the eager fake quantization", self.name,
                     len(carried))
        missed = self.check_coverage(prepared, gen)
        wrapper = quant.wrap_prepared(prepared, self.outputs, features, gen)
        wrapper.train(True)
        quant.freeze(prepared, observers=self.frozen["observers"], bn=self.frozen["bn"])
        pl_module.generator = wrapper.to(device)
        if self.entry is not None:
            self.entry["fp32_layers_left"] = missed
        log.info("%s: generator captured and prepared for QAT (%s)%s", self.name, pl_module.generator_spec,
                 f", resuming {resume}" if resume else "")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        gm = self.prepared(pl_module)
        if gm is None:
            waiting = self.eager and self.eager_states is None  # the gated network trains fake-quantized eagerly
            if self.start_step is None and not self.finished and not waiting \
                    and trainer.global_step >= self.join_step:
                self.capture(trainer, pl_module, resumed=False)  # QAT joins after the warm-up or the removal
                rebuild_optimizers(trainer)  # new parameters; the LR schedule goes on where it was
                gm = self.prepared(pl_module)
            if gm is None:
                return
        done = int(trainer.global_step) - int(self.start_step or 0)
        for what, after in (("observers", self.freeze_observers_after), ("bn", self.freeze_bn_after)):
            if after is not None and done >= after and not self.frozen[what]:
                self.frozen[what] = True
                quant.freeze(gm, **{what: True})
                log.info("%s: %s frozen at step %d", self.name, "observers" if what == "observers"
                         else "batch-norm statistics", trainer.global_step)
        if not getattr(gm, quant.TRAINING_ATTR, False):  # Lightning restored the flags only after validation
            pl_module.generator.train(True)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        if self.prepared(pl_module) is not None:
            checkpoint[QAT_KEY] = {"prefix": "captured.", "settings": self.settings.describe(True)}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        prepared = self.prepared(pl_module)
        if self.start_step is None and not self.finished:
            log.warning("%s: the run ended at step %d before QAT joined (start_step=%d): no int8 model", self.key,
                        trainer.global_step, self.join_step)
        if prepared is None or self.finished:
            return
        wrapper = pl_module.generator
        device = next(wrapper.parameters()).device
        fp32 = build_generator(pl_module.generator_spec)
        load_fp32_state(fp32, {k: v.detach().cpu() for k, v in prepared.state_dict().items()})
        pl_module.generator = fp32.to(device)  # the run's final metrics: the fp32 model with the QAT weights
        details = {"qat_steps": int(trainer.global_step) - int(self.start_step or 0),
                   "frozen": dict(self.frozen)}
        self.finish(trainer, pl_module, prepared, self.outputs, details)
        if self.entry is not None:
            log.info("%s: %s -> int8 %s", self.name, short(self.entry["before"]), self.entry.get("after"))

    def state_dict(self) -> dict[str, Any]:
        out = {**super().state_dict(), "start_step": self.start_step, "frozen": dict(self.frozen), "eager": self.eager}
        if self.eager and self.start_step is None:  # the eager fake quantizers' ranges (taken off, or attached)
            out["eager_states"] = self.eager_states
            if self.eager_states is None and self._gen_ref is not None:
                out["eager_attached"] = eager_quant.states(self._gen_ref)
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        st = state_dict.get("start_step")
        self.start_step = None if st is None else int(st)
        self.frozen = {**self.frozen, **(state_dict.get("frozen") or {})}
        self.eager = bool(state_dict.get("eager", self.eager))
        self.eager_states = state_dict.get("eager_states", self.eager_states)
        self._resumed_attached = state_dict.get("eager_attached", self._resumed_attached)


class PTQ(Quantization):
    """Post-training quantization: calibrate on ``calib_batches`` batches, convert; the run does not train."""

    name = "ptq"
    qat = False
    SOURCES = ("train", "val")

    def __init__(self, calib_batches: int = 32, calibrate: str = "train", **kwargs: Any):
        super().__init__(**kwargs)
        check(isinstance(calib_batches, int) and not isinstance(calib_batches, bool) and calib_batches >= 1,
              f"{self.key}.calib_batches", calib_batches,
              "is impossible; calibration needs at least one batch (e.g. 32)")
        check(calibrate in self.SOURCES, f"{self.key}.calibrate", calibrate,
              "is not supported; use train (training batches) or val (validation images)")
        self.calib_batches, self.calibrate = calib_batches, calibrate

    def config(self) -> dict[str, Any]:
        return {**super().config(), "calib_batches": self.calib_batches, "calibrate": self.calibrate}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.check_order(trainer)
            self.check_module(pl_module)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.finished:
            trainer.should_stop = True  # post-training quantization: no training step
            log.info("%s: no training (post-training quantization at the end of fit)", self.name)

    def batches(self, trainer: L.Trainer):
        """LR batches for calibration: the first training batches, or whole validation images one at a time."""
        dm = trainer.datamodule
        if self.calibrate == "train":
            loader = dm.train_dataloader()
            for i, batch in enumerate(loader):
                if i >= self.calib_batches:
                    return
                yield batch["lr"]
        else:
            sets = dm.sets("val") if hasattr(dm, "sets") else []
            require(bool(sets), f"{self.key}.calibrate=val needs validation images; use calibrate=train")
            n = 0
            for ds in sets:
                for i in range(len(ds)):
                    if n >= self.calib_batches:
                        return
                    yield ds[i]["lr"].unsqueeze(0)
                    n += 1

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.finished:
            return
        gen = self.check_module(pl_module)
        self.entry = {"technique": self.name, **self.config(), "before": self.measure_fp32(trainer, pl_module)}
        append_log(pl_module, self.entry)
        device = next(gen.parameters()).device
        gm, outputs, _ = quant.capture(gen.cpu(), training=False)
        gen.to(device)
        prepared = quant.prepare(gm, self.settings, qat=False)
        missed = self.check_coverage(prepared, gen)
        n = 0
        with torch.no_grad():
            for lr in self.batches(trainer):
                prepared(lr.float().cpu())
                n += 1
        require(n > 0, f"{self.key}: no calibration batch could be read ({self.calibrate} data is empty)")
        self.entry["fp32_layers_left"] = missed
        self.finish(trainer, pl_module, prepared, outputs, {"calibration": {"source": self.calibrate,
                                                                             "batches": n}})


__all__ = ["ARTEFACT", "PTQ", "QAT", "ConfigError", "Quantization", "require_torchao"]
