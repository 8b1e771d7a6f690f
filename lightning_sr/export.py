"""Export one exit of a multi-exit checkpoint as a standalone SRResNet checkpoint, and/or materialise the recycled
convolutions of a checkpoint into ordinary ones.

    python -m lightning_sr.export ckpt_path=outputs/.../checkpoints/last.ckpt exit=8 out=srresnet8.ckpt
    python -m lightning_sr.export ckpt_path=outputs/.../checkpoints/last.ckpt materialize=true out=plain.ckpt

The result is an ordinary lightning-sr generator checkpoint: ``lsr_arch`` holds a plain ``srresnet``
spec (``res_blocks`` = the exit's depth) and ``state_dict`` the ``generator.*`` weights under SRResNet
key names (shared head, the first k blocks, the exit's own body_tail/upsampler/tail). So
``evaluate.py ckpt_path=OUT`` evaluates it and ``train.py model=srresnet model.init_from=OUT`` (with any
compression callback) fine-tunes or compresses it like any SRResNet. ``exit`` is the block count
(8 or exit8); the deepest exit (exit = model.res_blocks) exports the central model alone.
``out`` defaults to ``<ckpt folder>/<ckpt stem>_exit<k>.ckpt``.

``materialize=true`` replaces every Weight Recycle convolution (``model.conv=recycle``, a quarter of the filters
stored) by an ``nn.Conv2d`` holding the full weight (:func:`lightning_sr.models.recycle.materialize`): the spec
says ``conv=normal``, the outputs are the same (to float precision), and channel pruning, quantization and ONNX
see an ordinary network (``train.py model.init_from=OUT compression=channel_prune``). With ``exit=K`` as well,
the exit is exported first. ``out`` defaults to ``<ckpt stem>_plain.ckpt`` (``_exit<k>_plain`` with an exit).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lightning_sr.checkpoint import ARCH_KEY, PREFIX, load_generator
from lightning_sr.errors import ConfigError, LightningSRError, require
from lightning_sr.fs import atomic_torch_save

EXPORT_KEY = "lsr_export"
USAGE = "usage: python -m lightning_sr.export ckpt_path=IN.ckpt [exit=K] [materialize=true] [out=OUT.ckpt]"
TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no", "")


def export_exit(ckpt_path: str | Path, exit: int | str | None, out: str | Path | None = None,
                materialize: bool = False) -> Path:
    """Write exit ``exit`` of the multi-exit checkpoint ``ckpt_path`` as an SRResNet checkpoint (``exit=None``: the
    whole generator), with recycled convolutions materialised when ``materialize``; returns the written path."""
    from lightning_sr.models.recycle import materialize as plain_convs
    from lightning_sr.models.recycle import materialize_spec, recycled_layers

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


def parse_args(argv: list[str]) -> dict[str, str]:
    args: dict[str, str] = {}
    for a in argv:
        key, sep, value = a.lstrip("-").partition("=")
        if key in ("h", "help"):
            raise SystemExit(f"{USAGE}\n{__doc__}")
        require(sep == "=" and key in ("ckpt_path", "exit", "out", "materialize"),
                f"unknown argument {a!r}; {USAGE}")
        args[key] = value
    require(bool(args.get("ckpt_path")), f"ckpt_path= is missing; {USAGE}")
    flag = args.get("materialize", "false").lower()
    require(flag in TRUE + FALSE, f"materialize={args.get('materialize')!r} is impossible; use true or false")
    require(bool(args.get("exit")) or flag in TRUE, f"exit= is missing (or give materialize=true); {USAGE}")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        mat = args.get("materialize", "false").lower() in TRUE
        out = export_exit(args["ckpt_path"], args.get("exit") or None, args.get("out") or None, materialize=mat)
    except (LightningSRError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    what = " ".join(([f"exit={args['exit']}"] if args.get("exit") else []) + (["materialized"] if mat else []))
    print(f"exported {what} of {args['ckpt_path']} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
