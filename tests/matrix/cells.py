"""The path matrix of issue 19 as data: every module (row) x every compression (column of this table), each cell
either the command-line overrides that run it (tiny: 2 residual blocks of 8 channels, 8 batches, the
embedded data) or the refusal it must end in (a substring of its one ``error:`` line).

``{init}``, ``{init_recycle}`` and ``{teacher}`` in an override stand for checkpoints of the row's own architecture
with random non-zero weights (tests/matrix/conftest.py writes them): every cell starts from ``{init}`` (a fresh SR
model outputs bicubic exactly, so its metrics would not depend on its weights; ``{init_recycle}``: the same with
model.conv=recycle), ``{teacher}`` (another seed) is the distillation teacher (GAN Slimming's student starts from
its teacher, as the experiment says).
tests/matrix/test_matrix.py runs every cell; docs/testing.md's table is generated from this file
(``python -m tests.matrix.cells`` prints it; a test checks that the document is in sync).
"""

from __future__ import annotations

from dataclasses import dataclass

ROWS = ("srresnet", "srgan", "multi_exit", "frvsr", "tecogan", "classify")
COMPRESSIONS = ("none", "block_prune", "channel_prune", "channel_sparsity", "distill", "channel_sparsity+distill",
                "ptq", "qat", "recycle", "gan_slimming")

# every run: tiny, CPU, no latency timing, no progress bar
COMMON = ("profile=smoke", "callbacks.progress_bar.refresh_rate=0", "callbacks.model_summary=null", "logger=csv",
          "cost.latency=false")

# optimiser steps per batch: the GANs make 2 (generator, discriminator); max_steps, the checkpoint interval, the
# removal step and the kill points of tests/matrix/test_resume_matrix.py all count optimiser steps
UNIT = {"srgan": 2, "tecogan": 2}


def unit(row: str) -> int:
    return UNIT.get(row, 1)


def steps(row: str) -> tuple[str, ...]:
    """8 batches, validation every 4, last.ckpt every 2 batches: the (a)/(c) multirun jobs are also column (d)'s
    uninterrupted runs, so a kill at batch 3 or 7 loses a batch that the resumed run replays."""
    u = unit(row)
    return (f"trainer.max_steps={8 * u}", "trainer.val_check_interval=4",
            f"callbacks.last_checkpoint.every_n_steps={2 * u}")

# the row: its model (and data, where the compression's own defaults would change it), tiny
BASE = {
    "srresnet": ("model=srresnet", "data=embedded", "model.res_blocks=2", "model.channels=8"),
    "srgan": ("model=srgan", "data=embedded", "model.res_blocks=2", "model.channels=8",
              "model.discriminator.channels=8"),
    "multi_exit": ("model=multi_exit", "data=embedded", "model.res_blocks=2", "model.channels=8", "model.exits=[1]"),
    "frvsr": ("model=frvsr", "data=embedded_video", "model.res_blocks=2", "model.channels=8"),
    "tecogan": ("model=tecogan", "data=embedded_video", "model.res_blocks=2", "model.channels=8",
                "model.discriminator.channels=8"),
    "classify": ("task=classify", "model=lenet5", "data=cifar10"),
}



def init(compression: str) -> tuple[str, ...]:
    """Where a cell starts: ``{init}``, or for model.conv=recycle ``{init_recycle}`` (a checkpoint's architecture
    replaces the config's, so a recycled model starts from a recycled checkpoint)."""
    return ("model.init_from={init_recycle}",) if compression == "recycle" else ("model.init_from={init}",)

# the column: how the compression is asked for (options that keep it tiny and make it act within 4 steps)
COMPRESSION_OVERRIDES = {
    "none": (),
    "block_prune": ("compression=block_prune", "compression.block_prune.keep=1"),
    "channel_prune": ("compression=channel_prune", "compression.channel_prune.ratio=0.5"),
    "channel_sparsity": ("compression=channel_sparsity", "compression.channel_sparsity.target_macs=0.5",
                         "compression.channel_sparsity.prune_at_step={prune}"),
    "distill": ("compression=distill", "compression.distill.teacher={teacher}"),
    "channel_sparsity+distill": ("compression=[channel_sparsity,distill]",
                                 "compression.channel_sparsity.target_macs=0.5",
                                 "compression.channel_sparsity.prune_at_step={prune}",
                                 "compression.distill.teacher={teacher}"),
    "ptq": ("compression=ptq", "compression.ptq.calib_batches=2", "compression.ptq.compile=false"),
    "qat": ("compression=qat", "compression.qat.compile=false"),
    "recycle": ("model.conv=recycle",),
    # distillation + channel sparsity (removal at 75 %: batch 6 of 8) + QAT eagerly from step 0, then the captured
    # slim graph
    "gan_slimming": ("experiment=gan_slimming", "compression.distill.teacher={teacher}",
                     "compression.qat.compile=false", "compression.channel_sparsity.target_macs=0.5"),
}


@dataclass(frozen=True)
class Run:
    """A cell that trains: its final metrics are checked against an independent evaluation of last.ckpt."""


@dataclass(frozen=True)
class Refused:
    """A cell refused by design: exactly one ``error:`` line containing ``needle``, before any training step."""
    needle: str


RUN = Run()

VIDEO_QUANT = "quantizes image generators; the video module (VideoSRModule) is not supported (use model=srresnet, " \
              "srgan or multi_exit)"
CLASSIFY = "compresses super-resolution generators; task=classify (model.arch='lenet5') is not supported; use " \
           "model=srresnet, srgan or multi_exit (classifiers: model.conv=recycle, compression=distill)"
# refused cells (single process and DDP alike); every cell not listed runs
REFUSED: dict[tuple[str, str], Refused] = {
    ("multi_exit", "block_prune"): Refused(
        "compression.block_prune cannot prune a multi-exit model (MultiExitSRResNet): its exits are attached to "
        "block indices; export an exit first (lightning_sr.export) or prune a model=srresnet checkpoint"),
    **{(r, q): Refused(f"compression.{q} {VIDEO_QUANT}") for r in ("frvsr", "tecogan") for q in ("ptq", "qat")},
    # experiment=gan_slimming's feature distillation names SRResNet's trunk end, which FRNet does not have (and its
    # QAT would be refused next: the video module is not quantized)
    **{(r, "gan_slimming"): Refused("compression.distill: the student has no layer 'body_tail.0'; valid names "
                                    "include fnet") for r in ("frvsr", "tecogan")},
    # LeNet5 (task=classify): no residual blocks, no SR output layers to protect, no PSNR to quantize against
    ("classify", "block_prune"): Refused("compression.block_prune needs the SR layout part `body` "
                                         "(lightning_sr/networks/layout.py); model.arch='lenet5' (LeNet5) has none"),
    **{("classify", c): Refused(f"compression.{k} {CLASSIFY}") for c, k in (
        ("channel_prune", "channel_prune"), ("channel_sparsity", "channel_sparsity"),
        ("channel_sparsity+distill", "channel_sparsity"), ("ptq", "ptq"), ("qat", "qat"))},
    ("classify", "gan_slimming"): Refused("compression.distill: the student has no layer 'body_tail.0'; valid "
                                          "names include"),
}
# cells that run in one process but are refused under trainer=ddp_cpu trainer.devices=2
GAN_SLIMMING_DDP = Refused(
    "compression.channel_sparsity with compression.qat (GAN Slimming: channels removed mid-run, then the slim network "
    "captured for QAT) is not supported under DDP (2 processes); run it on one process (trainer.devices=1, or "
    "trainer=cpu / trainer=gpu)")
REFUSED_UNDER_DDP: dict[tuple[str, str], Refused] = {
    (r, "gan_slimming"): GAN_SLIMMING_DDP for r in ("srresnet", "srgan", "multi_exit")}

# the cell of each row also run as a plain `python train.py` (no -m: hydra.run.dir), equal to its multirun job
PLAIN = {"srresnet": "channel_sparsity+distill", "srgan": "gan_slimming", "multi_exit": "distill", "frvsr": "channel_prune",
         "tecogan": "block_prune", "classify": "recycle"}


def refusal(row: str, compression: str, ddp: bool = False) -> Refused | None:
    return REFUSED.get((row, compression)) or (REFUSED_UNDER_DDP.get((row, compression)) if ddp else None)


def cell(row: str, compression: str, ddp: bool = False) -> Run | Refused:
    return refusal(row, compression, ddp) or RUN


def fill(overrides, ckpts: dict[str, object] | None = None) -> list[str]:
    """``{init}``, ``{init_recycle}``, ``{teacher}`` replaced by ``ckpts``' paths."""
    out = list(overrides)
    for k, v in (ckpts or {}).items():
        out = [o.replace("{" + k + "}", str(v)) for o in out]
    return out


def cell_overrides(row: str, compression: str, ckpts: dict[str, object] | None = None, ddp: bool = False
                   ) -> list[str]:
    """The cell's own part of the command line: where it starts and its compression. Channel sparsity removes its
    channels at batch 4 (``{prune}``) in one process; under DDP at the end of the run (its default), because a
    removal in the middle of a multi-process run is refused (one line: prune at the end, then fine-tune)."""
    over = [o for o in COMPRESSION_OVERRIDES[compression] if not (ddp and "{prune}" in o)]
    return fill([*init(compression), *over], {**(ckpts or {}), "prune": 4 * unit(row)})


def row_overrides(row: str) -> list[str]:
    """The row's part of the command line, common to all its cells: tiny model and data, 8 batches."""
    return [*COMMON, *steps(row), *BASE[row]]


def overrides(row: str, compression: str, ckpts: dict[str, object] | None = None, ddp: bool = False) -> list[str]:
    """The command line of one cell (without hydra.run.dir / the sweep's folder)."""
    return [*row_overrides(row), *cell_overrides(row, compression, ckpts, ddp)]


def runnable(row: str, ddp: bool = False) -> list[str]:
    return [c for c in COMPRESSIONS if isinstance(cell(row, c, ddp), Run)]


def refused(ddp: bool = False) -> list[tuple[str, str]]:
    return [(r, c) for r in ROWS for c in COMPRESSIONS if isinstance(cell(r, c, ddp), Refused)]


RESUME = "test_sigkill_mid_run_then_same_command_equals_uninterrupted"  # tests/matrix/test_resume_matrix.py


SINGLE = "test_row_single_process_multirun_through_the_report"
UNDER_DDP = "test_row_under_ddp_equals_a_single_process_evaluation"
REFUSAL = "test_refused_cell_is_one_line"


def _entry(row: str, compression: str, ddp: bool, test: str) -> str:
    x = cell(row, compression, ddp)
    if isinstance(x, Refused):
        return f"refused: `{x.needle}` ({REFUSAL}[{row}-{compression}-{'ddp' if ddp else 'single'}])"
    return f"{test}[{row}]"


def table() -> str:
    """docs/testing.md's matrix: one line per (row, compression), one column per path; each entry the test (in
    tests/matrix/test_matrix.py; column (d): test_resume_matrix.py) or the refusal's message."""
    lines = ["| row | compression | (a) single process | (b) ddp_cpu, 2 processes | (c) multirun + report | "
             "(d) SIGKILL + resume |", "|---|---|---|---|---|---|"]
    for r in ROWS:
        for c in COMPRESSIONS:
            a = _entry(r, c, False, SINGLE) + (" + plain `python train.py`" if PLAIN[r] == c else "")
            b = _entry(r, c, True, UNDER_DDP)
            d = f"{RESUME}[{r}-{c}]" if isinstance(cell(r, c), Run) else "refused (as in (a))"
            lines.append(f"| {r} | {c} | {a} | {b} | {_entry(r, c, False, SINGLE)} | {d} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(table(), end="")
