"""int8 quantization (compression=qat|ptq): a real int8 program at the end of a real Trainer run, evaluated from
its file by evaluate.py; resume mid-QAT; composition after pruning; the bad-input errors; the capturable bicubic
skip. One test compiles the int8 program (the oneDNN kernels); every other one runs the reference graph."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from lightning_sr.checkpoint import load_generator, read_checkpoint
from lightning_sr.compression.ptq import PTQ
from lightning_sr.compression.qat import QAT
from lightning_sr.compression.quantization import require_torchao
from lightning_sr.errors import ConfigError, WeightsError
from lightning_sr.run import evaluate, train
from tests.compression_helpers import SPEC, save_ckpt, tiny_generator
from tests.conftest import SMOKE, compose, run_task_in_process

pytestmark = pytest.mark.usefixtures("one_thread")

# the reference graph (no compile) in the Trainer runs: compiling costs 10-30 s per model on this CPU
QAT_ARGS = ["compression=qat", "compression.qat.compile=false", "compression.qat.freeze_observers_after=1"]


@pytest.fixture(scope="module")
def init_ckpt(tmp_path_factory) -> Path:
    spec = {**SPEC, "res_blocks": 1}
    return save_ckpt(tiny_generator(**spec), spec, tmp_path_factory.mktemp("q_init") / "init.ckpt")


@pytest.fixture(scope="module")
def qat_run(tiny_data, init_ckpt, tmp_path_factory):
    """4 QAT steps from an fp32 checkpoint (observers frozen after the first)."""
    out = tmp_path_factory.mktemp("qat") / "run"
    torch.set_num_threads(1)
    m = train(compose(SMOKE + tiny_data + QAT_ARGS + [f"model.init_from={init_ckpt}"], out))
    return m, out


def test_bicubic_skip_is_capturable_with_dynamic_size():
    """The generators' global skip exports with dynamic batch/height/width and equals MATLAB's imresize at sizes
    other than the one it was captured at."""
    from lightning_sr.networks.graph import example_input, export_dims
    from lightning_sr.ops.imresize import bicubic_upscale, imresize

    class Skip(nn.Module):
        def forward(self, x):
            return bicubic_upscale(x, 4)

    ep = torch.export.export(Skip(), (example_input(),), dynamic_shapes={"x": export_dims()})
    g = ep.module()
    for shape in ((1, 3, 7, 12), (3, 3, 23, 9)):
        x = torch.rand(shape, generator=torch.Generator().manual_seed(shape[2]))
        y = g(x)
        assert y.shape == (shape[0], 3, 4 * shape[2], 4 * shape[3])
        assert torch.allclose(y, bicubic_upscale(x, 4), atol=1e-6)
        assert torch.allclose(y, imresize(x, scale=4), atol=1e-5)


def test_qat_ends_in_an_int8_program_that_evaluate_reads(qat_run, tiny_data, tmp_path):
    m, out = qat_run
    q = m["int8"]
    art = out / "checkpoints" / "int8.pt2"
    side = json.loads((out / "checkpoints" / "int8.json").read_text())
    assert q["artefact"] == str(art) and side["technique"] == "qat" and side["generator"]["scale"] == 4
    assert side["source_checkpoint"] == m["last_ckpt"] and side["quantizer"]["weights"].startswith("int8")
    # every convolution (head and tail included) is int8; PReLU reads/writes int8 around an fp32 op
    assert q["layers"]["convs_int8"] == "7/7" and "tail" in q["layers"]["int8"]
    assert "body.0.act (int8 in/out)" in q["layers"]["fp32"]
    assert q["qat_steps"] == 4 and q["frozen"]["observers"] is True
    assert q["size_mb"] < q["fp32_size_mb"] and q["size_ratio"] < 1
    entry = m["compression"][-1]
    assert entry["technique"] == "qat" and entry["after"]["psnr"] == q["psnr"]
    # the run's own model is the fp32 generator with the QAT weights; the int8 one is within a fraction of a dB
    assert abs(q["psnr"] - m["psnr"]) < 0.3
    # the artefact holds int8 weights and no fp32 copies of them
    gen, spec = load_generator(art)
    assert spec["_int8"] and sum(b.dtype == torch.int8 for b in gen.buffers()) == 7
    assert not any(p.dim() == 4 for p in gen.parameters())
    # evaluate.py on the file: the same metrics code gives the number the run recorded
    data = [a for a in tiny_data if not a.startswith("callbacks.")]
    ev = evaluate(compose(["ckpt_path=" + str(art), "int8_compile=false", *data], tmp_path / "ev",
                          config_name="evaluate"))
    assert ev["psnr"] == pytest.approx(q["psnr"], abs=1e-4)
    assert ev["cost"]["params"] == q["params"]
    # the report: an int8 row with the run's column names
    from lightning_sr.metrics_json import int8_values

    row = int8_values(json.loads((out / "metrics.json").read_text()))
    assert row["size_mb"] == q["size_mb"] and row["psnr"] == q["psnr"] and "folder/psnr" in row


def test_resume_mid_qat_gives_the_uninterrupted_result(qat_run, tiny_data, init_ckpt, tmp_path):
    ref, ref_out = qat_run
    out = tmp_path / "run"
    args = SMOKE + tiny_data + QAT_ARGS + [f"model.init_from={init_ckpt}"]
    with pytest.raises(RuntimeError, match="crash at step 2"):
        train(compose(args + ["+callbacks.crash._target_=tests.helpers.CrashAt", "+callbacks.crash.step=2"], out))
    ck = read_checkpoint(out / "checkpoints" / "last.ckpt")
    assert ck["global_step"] == 2 and ck["lsr_qat"]["prefix"] == "captured."
    assert any(k.endswith("fake_quant_enabled") for k in ck["state_dict"])
    fp32, _ = load_generator(out / "checkpoints" / "last.ckpt")  # a mid-QAT checkpoint reloads as fp32 too
    assert not any(b.dtype == torch.int8 for b in fp32.buffers())
    m = train(compose(args, out))  # the same command resumes
    assert m["global_step"] == 4 and m["int8"]["qat_steps"] == 4 and m["int8"]["frozen"]["observers"] is True
    assert len(m["compression"]) == 1 and m["compression"][0]["before"] == ref["compression"][0]["before"]
    # the same weights, fake-quant scales and observers as the uninterrupted run, hence the same int8 model
    mine = read_checkpoint(out / "checkpoints" / "last.ckpt")["state_dict"]
    theirs = read_checkpoint(ref_out / "checkpoints" / "last.ckpt")["state_dict"]
    assert mine.keys() == theirs.keys()
    diff = {k: float((mine[k].double() - theirs[k].double()).abs().max()) for k in mine if mine[k].is_floating_point()}
    assert max(diff.values()) <= 1e-6, max(diff.items(), key=lambda kv: kv[1])
    assert all(torch.equal(mine[k], theirs[k]) for k in mine if not mine[k].is_floating_point())
    assert m["int8"]["psnr"] == pytest.approx(ref["int8"]["psnr"], abs=1e-6)
    assert m["psnr"] == pytest.approx(ref["psnr"], abs=1e-6)


def test_qat_after_block_pruning_and_ptq_keeping_head_and_tail_fp32(tiny_data, tmp_path):
    spec = {**SPEC, "res_blocks": 2}
    init = save_ckpt(tiny_generator(**spec), spec, tmp_path / "init.ckpt")
    m = train(compose(SMOKE + tiny_data + ["compression=[block_prune,qat]", "compression.block_prune.keep=1",
                                           "compression.qat.compile=false", f"model.init_from={init}"],
                      tmp_path / "pq"))
    assert [e["technique"] for e in m["compression"]] == ["block_prune", "qat"]
    assert m["generator"]["res_blocks"] == 1 and m["int8"]["layers"]["convs_int8"] == "7/7"
    gen, spec8 = load_generator(Path(m["int8"]["artefact"]))
    assert spec8["res_blocks"] == 1 and gen(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)
    # PTQ from the same checkpoint: no training step; head, tail and upsampler kept fp32 (the PAMS convention)
    m = train(compose(SMOKE + tiny_data + ["compression=ptq", "compression.ptq.compile=false",
                                           "compression.ptq.calibrate=val", "compression.ptq.calib_batches=2",
                                           "compression.ptq.fp32_layers=[head,upsampler,tail]",
                                           f"model.init_from={init}"], tmp_path / "ptq"))
    q = m["int8"]
    assert m["global_step"] == 0 and q["calibration"] == {"source": "val", "batches": 2}
    assert q["layers"]["convs_int8"] == "5/9" and "tail" in q["layers"]["fp32"] and "head.0" in q["layers"]["fp32"]
    assert abs(q["psnr"] - m["compression"][0]["before"]["psnr"]) < 0.05  # PTQ of the body alone: nearly lossless


def test_compiled_int8_program_runs_onednn_int8_kernels(qat_run):
    """The saved program compiled for the CPU (what evaluate.py and the latency figures run) uses oneDNN's
    quantized convolutions and agrees with the reference graph."""
    from torch._inductor.utils import run_and_get_code

    _, out = qat_run
    gen, _ = load_generator(out / "checkpoints" / "int8.pt2")
    x = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(0))
    fast = gen.compiled()
    y, code = run_and_get_code(fast, x)
    assert "onednn.qconv" in "\n".join(code)
    with torch.no_grad():
        ref = gen(x)
        assert float((y - ref).abs().max()) < 5e-3
        assert fast(torch.rand(1, 3, 9, 14)).shape == (1, 3, 36, 56)  # another size: the same (dynamic) graph


# ----- bad input ------------------------------------------------------------------------------------------------
def test_qat_before_pruning_is_refused_before_training(tiny_data, init_ckpt, tmp_path, capsys):
    code, err = run_task_in_process(SMOKE + tiny_data + ["compression=[qat,block_prune]", f"model.init_from={init_ckpt}",
                                                         "compression.block_prune.keep=1"], tmp_path / "r", capsys)
    assert code != 0 and len(err) == 1
    assert "compression.qat must be the last compression technique" in err[0]
    assert "compression=[block_prune, qat]" in err[0]
    assert not (tmp_path / "r" / "checkpoints" / "last.ckpt").exists()


def test_a_module_that_declares_no_int8_support_is_refused_before_training(tmp_path, capsys):
    """QAT reads the module's declared ``supports_int8`` (the video module: False), not its class."""
    video = [o for o in SMOKE if not o.startswith(("model.res_blocks", "model.channels"))] + [
        "model=frvsr", "data=embedded_video", "model.res_blocks=1", "model.channels=8", "cost.latency=false",
        "callbacks.model_summary=null", "trainer.max_steps=2", "compression=qat"]
    code, err = run_task_in_process(video, tmp_path / "v", capsys)
    assert code != 0 and len(err) == 1
    assert "compression.qat quantizes image generators; the video module (" in err[0]
    assert not (tmp_path / "v" / "checkpoints" / "last.ckpt").exists()


def test_a_model_the_quantizer_cannot_cover_is_named():
    from lightning_sr.transforms import pt2e_quant

    class Up(nn.Module):
        def __init__(self):
            super().__init__()
            self.up = nn.ConvTranspose2d(3, 3, 4, 2, 1)

        def forward(self, x):
            return self.up(x)

    m = Up()
    gm, _, _ = pt2e_quant.capture(m, training=True)
    prepared = pt2e_quant.prepare(gm, pt2e_quant.QuantSettings(), qat=True)
    with pytest.raises(ConfigError, match=r"covers none of the model's layers \(up \(ConvTranspose2d\)\)") as e:
        QAT().check_coverage(prepared, m)
    assert "\n" not in str(e.value)


def test_corrupt_foreign_or_wrong_scale_artefacts(qat_run, tmp_path):
    _, out = qat_run
    art = out / "checkpoints" / "int8.pt2"
    bad = tmp_path / "int8.pt2"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(WeightsError, match="not a torch.export archive"):
        load_generator(bad)
    raw = art.read_bytes()
    bad.write_bytes(raw[: len(raw) // 2])  # truncated
    with pytest.raises(WeightsError, match="corrupt"):
        load_generator(bad)
    foreign = tmp_path / "other.pt2"  # a torch.export program that lightning-sr did not write
    torch.export.save(torch.export.export(nn.Conv2d(3, 3, 1), (torch.rand(1, 3, 4, 4),)), str(foreign))
    assert zipfile.is_zipfile(foreign)
    with pytest.raises(WeightsError, match="not a lightning-sr int8 model"):
        load_generator(foreign)
    with pytest.raises(ConfigError, match="is a x4 int8 model but scale=2; set scale=4"):
        load_generator(art, expect_scale=2)
    with pytest.raises(WeightsError, match="is an int8 program, not a training checkpoint"):
        read_checkpoint(art)


@pytest.mark.parametrize("kwargs, match", [
    ({"calib_batches": 0}, "compression.ptq.calib_batches=0 is impossible; calibration needs at least one batch"),
    ({"calibrate": "test"}, "compression.ptq.calibrate='test' is not supported"),
    ({"reduce_range": "maybe"}, "compression.ptq.reduce_range='maybe' is not supported"),
])
def test_bad_ptq_options(kwargs, match):
    with pytest.raises(ConfigError, match=match.replace("(", r"\(").replace(")", r"\)")):
        PTQ(**kwargs)


def test_missing_torchao_is_one_line(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torchao", None)  # what an environment without torchao looks like
    with pytest.raises(ConfigError, match="compression=qat needs torchao") as e:
        QAT()
    assert "\n" not in str(e.value) and "pip install" in str(e.value)
    with pytest.raises(ConfigError, match="compression=ptq needs torchao"):
        require_torchao("compression=ptq")


def test_multi_exit_ptq_makes_every_exit_int8_and_evaluates_each(tiny_data, tmp_path):
    """The multi-exit module: the captured graph returns every exit; the int8 model is evaluated on each."""
    from lightning_sr.config import generator_spec
    from lightning_sr.networks import build_generator
    from tests.compression_helpers import randomize

    me = SMOKE + tiny_data + ["model=multi_exit", "model.res_blocks=2", "model.exits=[1]"]
    spec = generator_spec(compose(me))
    init = save_ckpt(randomize(build_generator(spec)), spec, tmp_path / "me.ckpt")  # two heads that differ
    m = train(compose(me + [f"model.init_from={init}", "compression=ptq", "compression.ptq.compile=false",
                            "compression.ptq.calib_batches=2"], tmp_path / "run"))
    q = m["int8"]
    n_int8, n_convs = map(int, q["layers"]["convs_int8"].split("/"))
    assert n_int8 == n_convs > 0
    (s, ex), = q["exits"].items()  # one validation set; the early exit scored beside the main output
    assert "exit1" in ex and "psnr" in ex["exit1"] and "psnr" in q["sets"][s]
    gen, spec = load_generator(Path(q["artefact"]))
    assert spec["arch"] == "multi_exit"
    with torch.no_grad():
        from lightning_sr.networks import named_outputs

        outs = named_outputs(gen, torch.rand(1, 3, 8, 8))
    assert set(outs) == {"", "exit1"} and all(o.shape == (1, 3, 32, 32) for o in outs.values())
    assert ex["exit1"]["psnr"] != q["sets"][s]["psnr"]  # two different heads, not one output under two names
    assert not torch.equal(outs[""], outs["exit1"])
