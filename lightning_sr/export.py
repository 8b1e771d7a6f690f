"""Export a trained model: a multi-exit network's exit as a checkpoint, or any model as ONNX, TorchScript or a
``torch.export`` program, checked against PyTorch after writing.

    python -m lightning_sr.export ckpt_path=IN.ckpt exit=8 [out=OUT.ckpt]                 # an exit, as a checkpoint
    python -m lightning_sr.export ckpt_path=IN.ckpt materialize=true [exit=K] [out=OUT.ckpt]  # recycled -> plain convs
    python -m lightning_sr.export ckpt_path=IN.ckpt format=onnx|torchscript|exported_program out=FILE
                                  [exit=K] [opset=18] [check=true] [check_image=IMG]

**An exit as a checkpoint** (``exit=K`` without ``format``, or ``format=ckpt``): an ordinary lightning-sr generator
checkpoint; ``lsr_arch`` holds a plain ``srresnet`` spec (``res_blocks`` = the exit's depth) and ``state_dict`` the
``generator.*`` weights under SRResNet key names (shared head, the first k blocks, the exit's own
body_tail/upsampler/tail). So ``evaluate.py ckpt_path=OUT`` evaluates it and ``train.py model=srresnet
model.init_from=OUT`` fine-tunes or compresses it like any SRResNet. ``exit`` is the block count (8 or exit8); the
deepest exit exports the central model alone. ``out`` defaults to ``<ckpt folder>/<ckpt stem>_exit<k>.ckpt``.

**Recycled convolutions as plain ones** (``materialize=true``, with or without ``exit=K``): every Weight Recycle
convolution (``model.conv=recycle``, a quarter of the filters stored) becomes an ``nn.Conv2d`` holding the full
weight (:func:`lightning_sr.networks.recycle.materialize`); the spec says ``conv=normal`` and the outputs are the same
(to float precision), so channel pruning and quantization see an ordinary network (``train.py model.init_from=OUT
compression=channel_prune``). ``out`` defaults to ``<ckpt stem>_plain.ckpt`` (``_exit<k>_plain`` with an exit). The
deployment formats below materialise by themselves.

**Deployment formats** (every model kind the registry rebuilds: SRResNet/SRGAN, pruned, multi-exit (its main
output, or ``exit=K``), bicubic, the frame-recurrent video model):

* input and output are float RGB in [0, 1], NCHW; batch, height and width are dynamic (LR sides >= 3 px);
* image models: one input ``lr`` (N, 3, H, W) -> ``sr`` (N, 3, sH, sW);
* the video model (FRNet) exports its recurrent step: inputs ``lr_curr``, ``lr_prev`` (N, 3, H, W) and ``hr_prev``
  (N, 3, sH, sW) -> ``hr`` (N, 3, sH, sW). Run it frame by frame over the frames in
  :func:`lightning_sr.inference.warmup_order` (TecoGAN's warm-up: frames ``k..1`` first, ``k = min(5, n - 1)``,
  then ``0..n-1``; keep the outputs from position ``k`` on), the first step with ``lr_prev = lr_curr`` and
  ``hr_prev`` = zeros, every later one with the previous LR frame and the previous output (``lsr_export`` says so:
  ``recurrence``, ``warmup_frames``); this is what ``evaluate.py`` and ``lsr-upscale`` compute;
  (not as ``exported_program``: ``torch.export`` guards its step on H, W mod 8, refused with one line);
* ``onnx``: ``torch.onnx.export(dynamo=True)`` at opset 18 (``opset=``); ``torchscript``: ``torch.jit.trace``
  (shapes stay symbolic; checked at sizes other than the traced one); ``exported_program``: ``torch.export`` with
  dynamic dimensions, ``torch.export.save`` (a ``.pt2`` that ``lsr-upscale`` also reads);
* the generator spec (``lsr_arch``) and the input/output description (``lsr_export``) travel in the file: ONNX
  ``metadata_props``, TorchScript and ``.pt2`` extra files ``lsr_arch.json`` / ``lsr_export.json``;
* after writing, the file is loaded back and run (onnxruntime on CPU, ``torch.jit.load``, ``torch.export.load``) on
  a random image and a real photograph (scikit-image's astronaut, or ``check_image=``): every output must equal
  PyTorch's within 1e-4, else the command fails (exit status 1) and says by how much.

A ``.pt2`` input (an exported program, e.g. the int8 artefact ``int8.pt2``) passes through ``format=exported_program``
(re-saved with the spec and checked); ONNX and TorchScript cannot be made from it: one line says so (export the
float checkpoint instead). A model whose convolutions have no plain form registered (Weight Recycle) must be
materialised first (:func:`lightning_sr.deploy.export_ready`; Weight Recycle registers its materializer there, so
recycled models export directly).
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lightning_sr.checkpoint import ARCH_KEY, PREFIX, load_generator
from lightning_sr.cli import parse_bool, parse_key_values
from lightning_sr.deploy import EXPORT_FILE, SPEC_FILE, export_ready, load_deployable, torch_export_load
from lightning_sr.errors import LightningSRError, require
from lightning_sr.fs import atomic_torch_save, atomic_write
from lightning_sr.inference import WARMUP_FRAMES, is_recurrent
from lightning_sr.networks.recycle import materialize as plain_convs
from lightning_sr.networks.recycle import materialize_spec, recycled_layers
from lightning_sr.ops.image_io import read_rgb

EXPORT_KEY = "lsr_export"
FORMATS = ("ckpt", "onnx", "torchscript", "exported_program")
SUFFIX = {"ckpt": ".ckpt", "onnx": ".onnx", "torchscript": ".pt", "exported_program": ".pt2"}
OPSET = 18
TOLERANCE = 1e-4
KEYS = ("ckpt_path", "exit", "out", "format", "opset", "check", "check_image", "materialize")
USAGE = ("usage: python -m lightning_sr.export ckpt_path=IN.ckpt exit=K|materialize=true [out=OUT.ckpt] | ckpt_path=IN.ckpt "
         "format=onnx|torchscript|exported_program [out=FILE] [exit=K] [opset=18] [check=true]")


class ExportCheckError(LightningSRError):
    """The written file does not compute what the PyTorch model computes."""


# ----- an exit as a checkpoint -------------------------------------------------------------------------------------
def export_exit(ckpt_path: str | Path, exit: int | str | None, out: str | Path | None = None,
                materialize: bool = False) -> Path:
    """Write exit ``exit`` of the multi-exit checkpoint ``ckpt_path`` as an SRResNet checkpoint (``exit=None``: the
    whole generator), with recycled convolutions materialised when ``materialize``; returns the written path."""
    model, spec = load_generator(ckpt_path, what="ckpt_path")
    info: dict[str, Any] = {"source": str(ckpt_path), "source_arch": spec}
    stem = Path(ckpt_path).stem
    if exit is not None:
        require(spec.get("arch") == "multi_exit",
                f"ckpt_path {ckpt_path} holds a {spec.get('arch')!r} generator; export needs a multi-exit checkpoint "
                f"(trained with model=multi_exit)")
        k = model.exit_depth(exit)
        model, new_spec = model.export_exit(k), model.exit_spec(k)
        info["exit"], stem = f"exit{k}", f"{stem}_exit{k}"
    else:
        new_spec = dict(spec)
    if materialize:
        require(bool(recycled_layers(model)), f"ckpt_path {ckpt_path} has no recycled convolution (model.conv="
                                               f"{spec.get('conv', 'normal')}); materialize=true is for model.conv=recycle")
        model, new_spec = plain_convs(model), materialize_spec(new_spec)
        info["materialized"], stem = True, f"{stem}_plain"
    state = {PREFIX + key: v.detach().clone().contiguous() for key, v in model.state_dict().items()}
    out = Path(out) if out else Path(ckpt_path).with_name(f"{stem}.ckpt")
    out = out.expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save({"state_dict": state, ARCH_KEY: new_spec, EXPORT_KEY: info}, out)
    return out


def materialize_checkpoint(ckpt_path: str | Path, out: str | Path | None = None) -> Path:
    """``ckpt_path`` with its recycled convolutions as ordinary ones (``conv=normal``); returns the written path."""
    return export_exit(ckpt_path, None, out, materialize=True)


# ----- deployment formats ------------------------------------------------------------------------------------------
class RecurrentStep(nn.Module):
    """A frame-recurrent generator's step with one output: (lr_curr, lr_prev, hr_prev) -> hr."""

    def __init__(self, gen: nn.Module):
        super().__init__()
        self.gen = gen

    def forward(self, lr_curr: torch.Tensor, lr_prev: torch.Tensor, hr_prev: torch.Tensor) -> torch.Tensor:
        return self.gen.step(lr_curr, lr_prev, hr_prev)[0]


def export_model(ckpt_path: str | Path, exit: int | str | None = None) -> tuple[nn.Module, dict[str, Any], list[str]]:
    """(the module to export, its spec, its input names): an image model's forward, or a video model's step."""
    src = Path(str(ckpt_path))
    dep = load_deployable(src)
    model, spec = dep.module, dict(dep.spec)
    if exit not in (None, ""):
        require(spec.get("arch") == "multi_exit", f"exit={exit} is for multi-exit checkpoints; {src} holds a "
                                                  f"{spec.get('arch')!r} generator (leave exit= out)")
        spec = model.exit_spec(exit)
        model = model.export_exit(exit)
    model, spec = export_ready(model.eval(), spec)
    if is_recurrent(model):
        return RecurrentStep(model).eval(), spec, ["lr_curr", "lr_prev", "hr_prev"]
    return model, spec, ["lr"]


def pass_through(src: Path, fmt: str, out: Path, exit: int | str | None) -> tuple[nn.Module, dict, list[str]]:
    """A ``.pt2`` input (an exported program, e.g. the int8 artefact): ``format=exported_program`` re-saves it with
    the spec and the export description; any other format is refused with one line."""
    require(fmt == "exported_program",
            f"ckpt_path {src} is an exported program (.pt2, e.g. the int8 artefact): format={fmt} cannot be made "
            f"from it; use format=exported_program (passes it through) or export the float .ckpt")
    require(exit in (None, ""), f"exit={exit} needs the multi-exit .ckpt; a .pt2 holds one model (leave exit= out)")
    dep = load_deployable(src)
    extra = {SPEC_FILE: "", EXPORT_FILE: ""}
    ep = torch_export_load(src, extra)
    meta = {**export_meta(dep.spec, ["lr"], fmt, src, None), **{k: v for k, v in dep.meta.items() if k not in
                                                                ("format", "source")}}
    buf = io.BytesIO()
    torch.export.save(ep, buf, extra_files={SPEC_FILE: json.dumps(dep.spec), EXPORT_FILE: json.dumps(meta)})
    atomic_write(out, buf.getvalue())
    return dep.module, dict(dep.spec), ["lr"]


def example_inputs(names: list[str], scale: int, n: int = 2, h: int = 20, w: int = 28,
                   seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random inputs (sizes not multiples of 8, batch 2: no dimension is mistaken for a constant)."""
    g = torch.Generator().manual_seed(seed)
    lr = torch.rand(n, 3, h, w, generator=g)
    if len(names) == 1:
        return (lr,)
    return lr, torch.roll(lr, 1, dims=-1), torch.rand(n, 3, h * scale, w * scale, generator=g)


def _dynamic_shapes(names: list[str]) -> tuple[dict[int, Any], ...]:
    d = torch.export.Dim.DYNAMIC
    return tuple({0: d, 2: d, 3: d} for _ in names)


def export_meta(spec: dict[str, Any], names: list[str], fmt: str, source: str | Path, opset: int | None) -> dict:
    out = ["hr"] if len(names) == 3 else ["sr"]
    meta = {"format": fmt, "inputs": names, "outputs": out, "layout": "NCHW, float32 RGB in [0, 1]",
            "scale": int(spec["scale"]), "dynamic": ["batch", "height", "width"], "source": str(source),
            "torch": torch.__version__}
    if fmt == "onnx":
        meta["opset"] = int(opset or OPSET)
    if len(names) == 3:
        meta["warmup_frames"] = WARMUP_FRAMES
        meta["recurrence"] = ("run the step over frames k, k-1, ..., 1, 0, 1, ..., n-1 of an n-frame clip, k = "
                              "min(warmup_frames, n-1) (TecoGAN's warm-up; 0 = cold start; "
                              "lightning_sr.inference.warmup_order), and keep the outputs from position k on; "
                              "first step: lr_prev = lr_curr, hr_prev = zeros (N, 3, sH, sW); then the previous LR "
                              "frame and the previous output hr")
    return meta


def _write_onnx(model: nn.Module, args: tuple, names: list[str], spec: dict, meta: dict, out: Path,
                opset: int) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(model, args, None, dynamo=True, opset_version=opset, input_names=names,
                                 output_names=meta["outputs"], dynamic_shapes=_dynamic_shapes(names), verbose=False)
    proto = prog.model_proto
    for key, value in ((ARCH_KEY, json.dumps(spec)), (EXPORT_KEY, json.dumps(meta))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    atomic_write(out, proto.SerializeToString())


def _write_torchscript(model: nn.Module, args: tuple, spec: dict, meta: dict, out: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings: shapes stay symbolic, the check below runs other sizes
        ts = torch.jit.trace(model, args, check_trace=False)
        buf = io.BytesIO()  # (torch 2.14 deprecates TorchScript: a FutureWarning, silenced here)
        torch.jit.save(ts, buf, _extra_files={SPEC_FILE: json.dumps(spec), EXPORT_FILE: json.dumps(meta)})
    atomic_write(out, buf.getvalue())


def _write_exported_program(model: nn.Module, args: tuple, names: list[str], spec: dict, meta: dict,
                            out: Path) -> None:
    ep = torch.export.export(model, args, dynamic_shapes=_dynamic_shapes(names))
    buf = io.BytesIO()
    torch.export.save(ep, buf, extra_files={SPEC_FILE: json.dumps(spec), EXPORT_FILE: json.dumps(meta)})
    atomic_write(out, buf.getvalue())


def load_exported(path: Path, fmt: str):
    """A function (numpy/torch inputs -> numpy output) that runs the written file in its own runtime."""
    if fmt == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        return lambda *xs: sess.run(None, {n: x.numpy() for n, x in zip(names, xs, strict=True)})[0]
    if fmt == "torchscript":
        ts = _jit_load(path)
        return lambda *xs: ts(*xs).detach().numpy()
    ep = torch_export_load(path).module()
    return lambda *xs: ep(*xs).detach().numpy()


def _jit_load(path: Path, extra: dict | None = None):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu", _extra_files=extra if extra is not None else {})


def read_metadata(path: str | Path) -> dict[str, Any]:
    """{"lsr_arch": spec, "lsr_export": description} of an exported file (ONNX, TorchScript or .pt2)."""
    p = Path(path)
    if p.suffix == ".onnx":
        import onnx

        props = {e.key: e.value for e in onnx.load(str(p), load_external_data=False).metadata_props}
        return {k: json.loads(props[k]) for k in (ARCH_KEY, EXPORT_KEY) if k in props}
    extra = {SPEC_FILE: "", EXPORT_FILE: ""}
    if p.suffix == ".pt2":
        torch_export_load(p, extra)
    else:
        _jit_load(p, extra)
    return {ARCH_KEY: json.loads(extra[SPEC_FILE]), EXPORT_KEY: json.loads(extra[EXPORT_FILE])}


def check_images(names: list[str], scale: int, check_image: str | Path | None = None
                 ) -> dict[str, list[tuple[torch.Tensor, ...]]]:
    """Inputs the written file must reproduce: a random image (other sizes than the traced one) and a real photograph
    (two consecutive 'frames' of it for a video model: the first step, then the next one fed with that output)."""
    g = torch.Generator().manual_seed(1)
    if check_image:
        photo = read_rgb(check_image)
    else:
        import skimage.data

        photo = skimage.data.astronaut()[96:144, 176:240]  # 48 x 64: the face and the flag
    photo = photo[:64, :64]
    real = torch.from_numpy(np.ascontiguousarray(photo)).permute(2, 0, 1).float().div(255)[None]
    rand = torch.rand(1, 3, 19, 13, generator=g)
    if len(names) == 1:
        return {"random": [(rand,)], "real": [(real,)]}
    shifted = torch.roll(real, shifts=(1, 2), dims=(-2, -1))  # the next frame: a small camera motion
    zeros = lambda x: x.new_zeros(x.shape[0], 3, x.shape[-2] * scale, x.shape[-1] * scale)  # noqa: E731
    return {"random": [(rand, rand, zeros(rand)), (torch.rand(1, 3, 19, 13, generator=g), rand,
                                                    torch.rand(1, 3, 19 * scale, 13 * scale, generator=g))],
            "real": [(real, real, zeros(real)), (shifted, real, None)]}


@torch.no_grad()
def check_export(path: Path, fmt: str, model: nn.Module, names: list[str], scale: int,
                 check_image: str | Path | None = None) -> dict[str, float]:
    """Max |file output - PyTorch output| per check image; :class:`ExportCheckError` above :data:`TOLERANCE`."""
    run = load_exported(path, fmt)
    errors: dict[str, float] = {}
    for tag, steps in check_images(names, scale, check_image).items():
        prev_out = None
        worst = 0.0
        for args in steps:
            if args[-1] is None:  # the next frame of a clip gets the previous output
                args = (*args[:-1], prev_out)
            ref = model(*args)
            got = run(*args)
            worst = max(worst, float(np.abs(got - ref.numpy()).max()))
            prev_out = ref
        errors[tag] = worst
        if worst > TOLERANCE:
            raise ExportCheckError(f"{path}: the {fmt} file's output differs from PyTorch's by {worst:.2e} (> "
                                   f"{TOLERANCE:g}) on the {tag} image; do not use it (report the model spec "
                                   f"and torch {torch.__version__})")
    return errors


def export_format(ckpt_path: str | Path, fmt: str, out: str | Path | None = None, exit: int | str | None = None,
                  opset: int = OPSET, check: bool = True, check_image: str | Path | None = None) -> dict[str, Any]:
    """Write ``ckpt_path``'s model as ``fmt`` to ``out`` and check it; returns {"out", "errors", "meta", ...}."""
    require(fmt in FORMATS[1:], f"format={fmt!r} is not supported; use one of {', '.join(FORMATS)}")
    t0 = time.perf_counter()
    src = Path(str(ckpt_path)).expanduser()
    suffix = SUFFIX[fmt] if src.suffix != SUFFIX[fmt] else f"_{fmt}{SUFFIX[fmt]}"
    default = src.with_name(src.stem + (f"_exit{exit}" if exit else "") + suffix)
    out = Path(str(out)).expanduser() if out else default
    require(out.resolve() != src.resolve(), f"out={out} would overwrite ckpt_path; give another out=")
    if src.suffix.lower() == ".pt2":
        model, spec, names = pass_through(src, fmt, out, exit)
        meta = read_metadata(out)[EXPORT_KEY]
        errors = check_export(out, fmt, model, names, int(spec["scale"]), check_image) if check else {}
        return {"out": out, "format": fmt, "errors": errors, "meta": meta, "spec": spec,
                "seconds": round(time.perf_counter() - t0, 1)}
    model, spec, names = export_model(src, exit)
    require(fmt != "exported_program" or len(names) == 1,
            f"format=exported_program: torch.export specialises the video model's step on H, W mod 8 (FNet's "
            f"padding), so the .pt2 would refuse other sizes; use format=onnx or format=torchscript for {src}")
    scale = int(spec["scale"])
    meta = export_meta(spec, names, fmt, src, opset)
    args = example_inputs(names, scale)
    with torch.no_grad():
        if fmt == "onnx":
            _write_onnx(model, args, names, spec, meta, out, int(opset))
        elif fmt == "torchscript":
            _write_torchscript(model, args, spec, meta, out)
        else:
            _write_exported_program(model, args, names, spec, meta, out)
    errors = check_export(out, fmt, model, names, scale, check_image) if check else {}
    return {"out": out, "format": fmt, "errors": errors, "meta": meta, "spec": spec,
            "seconds": round(time.perf_counter() - t0, 1)}


def parse_args(argv: list[str]) -> dict[str, str]:
    args = parse_key_values(argv, KEYS, ("ckpt_path",), USAGE, __doc__)
    mat = parse_bool(args.get("materialize", "false"), "materialize")
    fmt = args.get("format") or ("ckpt" if args.get("exit") or mat else "")
    require(bool(fmt), f"exit= is missing (an exit as a checkpoint), or give materialize=true or "
                       f"format=onnx|torchscript|exported_program; {USAGE}")
    require(fmt in FORMATS, f"format={fmt!r} is not supported; use one of {', '.join(FORMATS)}")
    require(fmt != "ckpt" or bool(args.get("exit")) or mat,
            f"format=ckpt exports an exit or materialises: exit= or materialize=true is missing; {USAGE}")
    require(fmt == "ckpt" or not mat, f"materialize=true writes a checkpoint; format={fmt} materialises recycled "
                                      f"convolutions by itself (leave materialize out)")
    args["materialize"] = mat
    require(str(args.get("opset", OPSET)).isdigit(), f"opset={args.get('opset')!r} is not an ONNX opset number; "
                                                     f"use e.g. opset={OPSET}")
    args["format"] = fmt
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        if args["format"] == "ckpt":
            mat = args["materialize"]
            out = export_exit(args["ckpt_path"], args.get("exit") or None, args.get("out") or None, materialize=mat)
            what = " ".join(([f"exit={args['exit']}"] if args.get("exit") else []) + (["materialized"] if mat else []))
            print(f"exported {what} of {args['ckpt_path']} -> {out}")
            return 0
        res = export_format(args["ckpt_path"], args["format"], args.get("out") or None, args.get("exit") or None,
                            int(args.get("opset", OPSET)), parse_bool(args.get("check", "true"), "check"),
                            args.get("check_image") or None)
    except ExportCheckError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except LightningSRError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    m = res["meta"]
    checked = ("checked: max |difference| " + ", ".join(f"{k} {v:.1e}" for k, v in res["errors"].items())
               + f" (<= {TOLERANCE:g})") if res["errors"] else "not checked (check=false)"
    opset = f", opset {m['opset']}" if "opset" in m else ""
    print(f"exported {res['spec'].get('arch')} x{m['scale']} as {res['format']}{opset}: inputs "
          f"{', '.join(m['inputs'])} -> {', '.join(m['outputs'])} (NCHW float RGB [0, 1], dynamic batch/height/width) "
          f"-> {res['out']}; {checked}; {res['seconds']:.0f} s")
    if "recurrence" in m:  # the video step: how to run it as evaluate.py / lsr-upscale do
        print(f"recurrent step (warmup_frames={m['warmup_frames']}): {m['recurrence']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
