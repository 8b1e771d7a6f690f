"""Knowledge distillation from a larger teacher, as a callback (``compression=distill``).

The teacher is any generator the registry rebuilds from a checkpoint (plain, pruned, an exported exit...):
``compression.distill.teacher=PATH``. It is frozen, in eval mode, without gradients, on the student's device, kept in
the callback (never in the student's checkpoint, never in its parameter count). Its loss terms reach the student's
training loss through the modules' loss hook (``loss_terms``), so every module (SRResNet, SRGAN's generator step,
the multi-exit network: every exit, the video generator: every frame) distils the same way, and each term is logged
as ``train/distill/<term>``:

* ``distill/output``: ``output_weight`` x L1 (``output_loss``) between the student's outputs and the teacher's;
* ``distill/feature``: ``feature_weight`` x L1 between student features at named layers, mapped by a learnable 1x1
  adapter to the teacher's width, and the teacher's features at its paired layers (``features``: a list of
  ``{student: body.3, teacher: body.15}``);
* ``distill/fakd``: ``fakd_weight`` x L1 between the spatial affinity matrices (FAKD, ICIP 2020) of student and
  teacher features at paired layers (``fakd``, same form): for features F (C x HW) normalised over channels at
  every position, the affinity is F^T F / HW (HW x HW), which needs no adapter.

Adapters train on an optimiser of their own (Adam, ``adapter_lr``), stepped after every batch, their gradients
averaged over DDP ranks. At the start the teacher is evaluated once on the validation sets (through the module's
own evaluation path) and its cost measured: ``metrics.json["teacher"]`` and the compression log hold its size and
PSNR beside the student's, and the sweep report shows them.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from lightning_sr.checkpoint import generator_from_checkpoint, read_checkpoint
from lightning_sr.compression.base import CompressionCallback, evaluate_metrics, generator_of
from lightning_sr.cost import cost_from_config
from lightning_sr.errors import ConfigError, check, check_choice, require
from lightning_sr.losses import pixel_loss
from lightning_sr.networks import named_outputs
from lightning_sr.networks.graph import GraphGenerator

log = logging.getLogger(__name__)

KEY = "compression.distill"


def _pairs(value: Any, key: str) -> list[tuple[str, str]]:
    from omegaconf import OmegaConf

    value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    if value in (None, [], ()):
        return []
    out = []
    for v in value:
        check(isinstance(v, dict) and isinstance(v.get("student"), str) and isinstance(v.get("teacher"), str), key,
              value, "must be a list of {student: LAYER, teacher: LAYER} pairs, e.g. [{student: body.3, teacher: "
                     "body.15}]")
        out.append((v["student"], v["teacher"]))
    return out


def _module(model: nn.Module, name: str, key: str, who: str) -> nn.Module:
    mods = dict(model.named_modules())
    if name not in mods:
        blocks = [n for n, m in mods.items() if n.count(".") <= 1 and n and next(m.children(), None) is not None]
        raise ConfigError(f"{key}: the {who} has no layer {name!r}; valid names include {', '.join(blocks[:24])}"
                          + ("..." if len(blocks) > 24 else ""))
    return mods[name]


def affinity(feat: torch.Tensor) -> torch.Tensor:
    """FAKD's spatial affinity: (N, C, H, W) -> (N, HW, HW), features normalised over channels at every position."""
    f = F.normalize(feat.flatten(2), dim=1)
    return torch.bmm(f.transpose(1, 2), f) / f.shape[-1]


def _tracing() -> bool:
    comp = torch.compiler
    return bool(comp.is_compiling() or (hasattr(comp, "is_exporting") and comp.is_exporting()))


class Distillation(CompressionCallback):
    name = "distill"

    def __init__(self, teacher: str | None = None, output_weight: float = 1.0, output_loss: str = "l1",
                 features: list | None = None, feature_weight: float = 1.0, fakd: list | None = None,
                 fakd_weight: float = 1.0, adapter_lr: float = 1e-4, evaluate: bool = True):
        require(bool(teacher), f"{KEY}.teacher is not set; give the teacher's checkpoint: {KEY}.teacher=PATH")
        self.teacher_path = str(teacher)
        self._ckpt = read_checkpoint(self.teacher_path, f"{KEY}.teacher")  # missing or unreadable: one line, now
        for key, v in (("output_weight", output_weight), ("feature_weight", feature_weight),
                       ("fakd_weight", fakd_weight)):
            check(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0, f"{KEY}.{key}", v,
                  "is impossible; use a weight >= 0")
        check_choice(f"{KEY}.output_loss", output_loss, ("l1", "mse", "charbonnier"))
        check(isinstance(adapter_lr, (int, float)) and adapter_lr > 0, f"{KEY}.adapter_lr", adapter_lr, "must be > 0")
        self.output_weight, self.feature_weight, self.fakd_weight = float(output_weight), float(feature_weight), \
            float(fakd_weight)
        self.output_loss = pixel_loss(output_loss, f"{KEY}.output_loss")
        self.feature_pairs = _pairs(features, f"{KEY}.features")
        self.fakd_pairs = _pairs(fakd, f"{KEY}.fakd")
        super().__init__(evaluate)
        self.adapter_lr = float(adapter_lr)
        self.teacher: nn.Module | None = None
        self.adapters = nn.ModuleList()
        self._feats: dict[str, dict[str, torch.Tensor]] = {"student": {}, "teacher": {}}
        self._hooks: list = []
        self._opt: torch.optim.Optimizer | None = None
        self._adapter_state: dict | None = None
        self._graph_warned = False
        self._opt_state: dict | None = None
        self.info: dict[str, Any] | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(name=self.name, teacher=self.teacher_path)

    # ----- set-up --------------------------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or self.teacher is not None:
            return
        self.preflight(trainer, pl_module)
        student = generator_of(pl_module, KEY)
        teacher, spec = generator_from_checkpoint(self._ckpt, self.teacher_path, what=f"{KEY}.teacher")
        self.student_names = {n for n, _ in student.named_modules()}
        self._ckpt = None
        t_scale, s_scale = spec.get("scale"), int(pl_module.scale)
        require(t_scale in (None, s_scale), f"{KEY}.teacher={self.teacher_path} is a x{t_scale} model but the student "
                                            f"is x{s_scale}; distil from a teacher of the same scale")
        device = trainer.strategy.root_device
        self.teacher = teacher.to(device).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.teacher_spec = spec
        for _, t in self.feature_pairs + self.fakd_pairs:  # the teacher's layer names (the student's: preflight)
            self._hooks.append(_module(self.teacher, t, KEY, "teacher").register_forward_hook(self._capture("teacher", t)))
        self._measure_teacher(trainer, pl_module)

    def preflight(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        student = generator_of(pl_module, KEY)
        for s, _ in self.feature_pairs + self.fakd_pairs:  # every student layer name, before training
            _module(student, s, KEY, "student")

    def _attach_student(self, pl_module: L.LightningModule) -> None:
        """Hooks on the student's layers and the adapters, once every other callback has shaped the student (pruned
        it, or restored its structure from a resumed checkpoint)."""
        student = pl_module.generator
        if isinstance(student, GraphGenerator) and (self.feature_pairs or self.fakd_pairs):
            log.warning("%s: the student is a captured graph (QAT captured it before training, or the run resumed "
                        "during QAT): its layers are not observable; feature distillation is off, output "
                        "distillation goes on", KEY)
            self._graph_warned = True
            return
        device = next(student.parameters()).device
        for name in sorted({s for s, _ in self.feature_pairs + self.fakd_pairs}):
            self._hooks.append(_module(student, name, KEY, "student").register_forward_hook(self._capture("student",
                                                                                                          name)))
        if self.feature_pairs and not len(self.adapters):
            for i, (s, t) in enumerate(self.feature_pairs):  # adapters: student width -> teacher width
                saved = (self._adapter_state or {}).get(f"{i}.weight")
                if saved is not None:  # a resumed run: the adapter as it was (a removal since is refitted lazily)
                    cs, ct = int(saved.shape[1]), int(saved.shape[0])
                else:  # sized by one probe pass
                    cs, ct = self._widths(student, self.teacher, s, t, device)
                self.adapters.append(nn.Conv2d(cs, ct, 1).to(device))
            if self._adapter_state:
                self.adapters.load_state_dict(self._adapter_state)

    def _capture(self, who: str, name: str):
        def hook(module, inputs, output):
            if _tracing():  # a graph capture (QAT's torch.export) runs the hooks on symbolic tensors: not a feature
                return
            self._feats[who][name] = output

        return hook

    @torch.no_grad()
    def _widths(self, student, teacher, s, t, device) -> tuple[int, int]:
        x = torch.rand(1, getattr(student, "in_channels", 3), 16, 16, device=device)
        was = student.training
        student.eval()
        student(x)
        teacher(x)
        student.train(was)
        return self._feats["student"][s].shape[1], self._feats["teacher"][t].shape[1]

    def _measure_teacher(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        cost = cost_from_config(self.teacher, getattr(pl_module, "cost_cfg", None), latency=False)
        self.info = {"path": self.teacher_path, "arch": self.teacher_spec.get("arch"),
                     "res_blocks": self.teacher_spec.get("res_blocks"), **cost}
        if self.evaluate:
            student, pl_module.generator = pl_module.generator, self.teacher
            try:  # the module's own evaluation path, on the teacher
                self.info.update(evaluate_metrics(trainer, pl_module))
            finally:
                pl_module.generator = student
        self.log_entry({"technique": self.name, "teacher": self.info,
                        "weights": {"output": self.output_weight, "feature": self.feature_weight,
                                    "fakd": self.fakd_weight},
                        "features": self.feature_pairs, "fakd": self.fakd_pairs})
        log.info("%s: teacher %s (%s params%s)", KEY, self.teacher_path, f"{cost['params']:,}",
                 f", PSNR {self.info['psnr']:.3f} dB" if "psnr" in self.info else "")

    # ----- the loss terms ------------------------------------------------------------------------------------------
    def _teacher_outputs(self, lr: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            if lr.dim() == 5:  # a clip: the video teacher runs its recurrence over it
                return self.teacher.forward_sequence(lr)["hr"]
            return named_outputs(self.teacher, lr)[""]

    def loss_terms(self, trainer, pl_module, stage: str = "generator", lr=None, outputs=None, **context
                   ) -> dict[str, torch.Tensor]:
        if stage != "generator" or self.teacher is None or lr is None:
            return {}
        terms: dict[str, torch.Tensor] = {}
        target = self._teacher_outputs(lr)
        if self.output_weight > 0 and outputs:
            terms["distill/output"] = self.output_weight * torch.stack(
                [self.output_loss(o, target) for o in outputs.values()]).mean()
        pairs = self.feature_pairs + self.fakd_pairs
        names = {n for n, _ in pairs}
        st, tt = self._feats["student"], self._feats["teacher"]
        fresh = all(s in st and t in tt and st[s].shape[0] == tt[t].shape[0] and st[s].shape[2:] == tt[t].shape[2:]
                    for s, t in pairs)  # this step's student features (not an evaluation's, before a capture)
        if names and not fresh:  # a captured student (QAT's graph) runs no module hooks
            if not self._graph_warned:
                log.warning("%s: the student's layers %s are no longer observable (the generator was captured as a "
                            "graph, e.g. QAT joined); feature distillation stops, output distillation goes on", KEY,
                            ", ".join(sorted(names)))
                self._graph_warned = True
            return terms
        self._feats["student"] = {}  # this step's features only: never a stale one
        if self.feature_pairs and self.feature_weight > 0:
            self._fit_adapters(st)
            terms["distill/feature"] = self.feature_weight * torch.stack(
                [F.l1_loss(a(st[s]), tt[t].detach()) for a, (s, t) in zip(self.adapters, self.feature_pairs,
                                                                           strict=True)]).mean()
        if self.fakd_pairs and self.fakd_weight > 0:
            terms["distill/fakd"] = self.fakd_weight * torch.stack(
                [F.l1_loss(affinity(st[s]), affinity(tt[t].detach())) for s, t in self.fakd_pairs]).mean()
        return terms

    def _fit_adapters(self, feats: dict[str, torch.Tensor]) -> None:
        """A student layer that lost channels (pruned during training) gets a new adapter for its new width."""
        rebuilt = False
        for i, (s, _) in enumerate(self.feature_pairs):
            a = self.adapters[i]
            if feats[s].shape[1] != a.in_channels:
                log.info("%s: %s now has %d channels (pruned): a new adapter", KEY, s, feats[s].shape[1])
                self.adapters[i] = nn.Conv2d(feats[s].shape[1], a.out_channels, 1).to(a.weight.device)
                rebuilt = True
        if rebuilt and self._opt is not None:
            self._opt = torch.optim.Adam(self.adapters.parameters(), lr=self.adapter_lr)

    # ----- the adapters' optimiser ----------------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.teacher is None:
            return
        self._attach_student(pl_module)
        if len(self.adapters):
            self._opt = torch.optim.Adam(self.adapters.parameters(), lr=self.adapter_lr)
            if self._opt_state:
                self._opt.load_state_dict(self._opt_state)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._feats["student"] = {}  # this batch's features only (never an evaluation's)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._opt is None:
            return
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            for p in self.adapters.parameters():  # not part of the DDP model: average by hand
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= dist.get_world_size()
        self._opt.step()
        self._opt.zero_grad(set_to_none=True)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def summary(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """The compression entry and ``teacher``: the teacher's size and PSNR beside the student's."""
        return {**super().summary(trainer, pl_module), **({"teacher": dict(self.info)} if self.info else {})}

    # ----- checkpoints: the adapters (the teacher is never saved) --------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"adapters": self.adapters.state_dict() if len(self.adapters) else self._adapter_state,
                "opt_state": self._opt.state_dict() if self._opt is not None else self._opt_state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._adapter_state, self._opt_state = state_dict.get("adapters"), state_dict.get("opt_state")
        if self._adapter_state and len(self.adapters):
            self.adapters.load_state_dict(self._adapter_state)
