"""Export one exit of a multi-exit checkpoint as a standalone SRResNet checkpoint.

    python -m lightning_sr.export ckpt_path=outputs/.../checkpoints/last.ckpt exit=8 out=srresnet8.ckpt

The result is an ordinary lightning-sr generator checkpoint: ``lsr_arch`` holds a plain ``srresnet``
spec (``res_blocks`` = the exit's depth) and ``state_dict`` the ``generator.*`` weights under SRResNet
key names (shared head, the first k blocks, the exit's own body_tail/upsampler/tail). So
``evaluate.py ckpt_path=OUT`` evaluates it and ``train.py model=srresnet model.init_from=OUT`` (with any
compression callback) fine-tunes or compresses it like any SRResNet. ``exit`` is the block count
(8 or exit8); the deepest exit (exit = model.res_blocks) exports the central model alone.
``out`` defaults to ``<ckpt folder>/<ckpt stem>_exit<k>.ckpt``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lightning_sr.checkpoint import ARCH_KEY, PREFIX, load_generator
from lightning_sr.errors import ConfigError, LightningSRError, require
from lightning_sr.fs import atomic_torch_save

EXPORT_KEY = "lsr_export"
USAGE = "usage: python -m lightning_sr.export ckpt_path=IN.ckpt exit=K [out=OUT.ckpt]"


def export_exit(ckpt_path: str | Path, exit: int | str, out: str | Path | None = None) -> Path:
    """Write exit ``exit`` of the multi-exit checkpoint ``ckpt_path`` as an SRResNet checkpoint; returns its path."""
    model, spec = load_generator(ckpt_path, what="ckpt_path")
    require(spec.get("arch") == "multi_exit",
            f"ckpt_path {ckpt_path} holds a {spec.get('arch')!r} generator; export needs a multi-exit checkpoint "
            f"(trained with model=multi_exit)")
    k = model.exit_depth(exit)
    exit_spec = model.exit_spec(k)
    state = {PREFIX + key: v.detach().clone().contiguous() for key, v in model.export_state(k).items()}
    out = Path(out) if out else Path(ckpt_path).with_name(f"{Path(ckpt_path).stem}_exit{k}.ckpt")
    out = out.expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "state_dict": state,
        ARCH_KEY: exit_spec,
        EXPORT_KEY: {"source": str(ckpt_path), "exit": f"exit{k}", "source_arch": spec},
    }
    atomic_torch_save(payload, out)
    return out


def parse_args(argv: list[str]) -> dict[str, str]:
    args: dict[str, str] = {}
    for a in argv:
        key, sep, value = a.lstrip("-").partition("=")
        if key in ("h", "help"):
            raise SystemExit(f"{USAGE}\n{__doc__}")
        require(sep == "=" and key in ("ckpt_path", "exit", "out"),
                f"unknown argument {a!r}; {USAGE}")
        args[key] = value
    for key in ("ckpt_path", "exit"):
        require(bool(args.get(key)), f"{key}= is missing; {USAGE}")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        out = export_exit(args["ckpt_path"], args["exit"], args.get("out") or None)
    except (LightningSRError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"exported exit={args['exit']} of {args['ckpt_path']} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
