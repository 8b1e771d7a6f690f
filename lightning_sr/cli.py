"""Entry-point glue: run a task, turn lightning-sr errors into one line, keep a failed job's record."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

from lightning_sr.errors import LightningSRError, require

log = logging.getLogger("lightning_sr")


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_task(task: Callable[[DictConfig], dict[str, Any]], cfg: DictConfig) -> float | None:
    """Run ``task``; return the headline PSNR (for Hydra sweepers).

    A :class:`LightningSRError` prints one line (``error: ...``), marks the job failed in its
    metrics.json and exits with status 2; in a multirun the other jobs still run.
    """
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    # lightning_sr.run (torch, Lightning) is imported here, not at the top: export, upscale and lsr-data import
    # this module for its argument parsers and must not pay for Lightning (several seconds on this CPU)
    from lightning_sr.run import atomic_write_text, overrides_of, run_dir_of

    try:
        metrics = task(cfg)
        return metrics.get("psnr")
    except SIGTERMException:  # pre-emption: last.ckpt was saved by the LastCheckpoint callback
        print("interrupted by SIGTERM: checkpoints/last.ckpt saved; run the same command again to resume",
              file=sys.stderr)
        sys.exit(143)
    except (LightningSRError, KeyboardInterrupt) as e:
        msg = f"{type(e).__name__}: {e}" if not isinstance(e, KeyboardInterrupt) else "interrupted"
        _end_distributed()  # first: the job's observer stops before a slow W&B finish in _record_failure
        _record_failure(cfg, msg, atomic_write_text, overrides_of, run_dir_of)
        if isinstance(e, KeyboardInterrupt):
            raise
        _report_error(e)
        if _is_multirun():
            return None
        sys.exit(2)
    except Exception as e:
        tb = traceback.format_exc()
        _end_distributed()
        _record_failure(cfg, f"{type(e).__name__}: {e}\n{tb}", atomic_write_text, overrides_of, run_dir_of)
        raise


def _end_distributed() -> None:
    """A failed job's process group goes with it (train() ends it after a finished job): otherwise the next job of a
    multirun in this process reuses it (Lightning skips an initialised group) and fails on the failed job's closed
    connections. Ending it also closes rank 1's connections, so a rank still waiting in a collective stops."""
    if "torch.distributed" not in sys.modules:  # nothing distributed was imported, so nothing to end
        return
    try:
        from lightning_sr.strategies import end_process_group

        end_process_group()
    except Exception:  # never hide the original error
        log.debug("ending the process group failed", exc_info=True)


def _report_error(e: Exception) -> None:
    """The one ``error:`` line. Under DDP every rank reaches the same refusal (a callback's ``setup`` runs on each):
    rank 0 prints it, the other ranks write it to their own log file only (``ddp_rank<N>.log``)."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    rank = getattr(rank_zero_only, "rank", 0)
    if rank == 0:
        print(f"error: {e}", file=sys.stderr)
        log.error("error: %s", e)
        return
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "error (rank %d): %s", (rank, e), None)
    for h in logging.getLogger().handlers + log.handlers:
        if isinstance(h, logging.FileHandler):
            h.handle(record)


def _record_failure(cfg, msg, atomic_write_text, overrides_of, run_dir_of) -> None:
    try:  # the job's W&B run ends as failed; the next job of a sweep in this process gets its own run
        from lightning_sr.loggers import close_open_runs  # Lightning: see run_task

        close_open_runs(msg)
    except Exception:
        pass
    try:
        from lightning.fabric.utilities.rank_zero import rank_zero_only

        if getattr(rank_zero_only, "rank", 0) != 0:
            return
        run_dir = run_dir_of(cfg)
        atomic_write_text(run_dir / "metrics.json", json.dumps(
            {"status": "failed", "error": msg, "name": cfg.get("name"), "overrides": overrides_of()}, indent=2) + "\n")
    except Exception:  # never hide the original error
        pass


# ----- key=value command lines (python -m lightning_sr.export / lsr-upscale) ------------------------------------
TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def parse_key_values(argv: list[str], keys: tuple[str, ...], required: tuple[str, ...], usage: str,
                     doc: str = "") -> dict[str, str]:
    """``key=value`` arguments (Hydra's style, without Hydra): unknown keys and missing required ones are one-line
    ConfigErrors that show ``usage``; ``-h``/``--help`` prints ``usage`` and ``doc``."""
    args: dict[str, str] = {}
    for a in argv:
        key, sep, value = a.lstrip("-").partition("=")
        if key in ("h", "help"):
            raise SystemExit(f"{usage}\n{doc}")
        require(sep == "=" and key in keys, f"unknown argument {a!r}; {usage}")
        args[key] = value
    for key in required:
        require(bool(args.get(key)), f"{key}= is missing; {usage}")
    return args


def parse_bool(value: str | bool, key: str) -> bool:
    if isinstance(value, bool):
        return value
    v = str(value).strip().lower()
    require(v in TRUE + FALSE, f"{key}={value!r} is not a boolean; use {key}=true or {key}=false")
    return v in TRUE
