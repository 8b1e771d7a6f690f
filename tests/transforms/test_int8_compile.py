"""Compiled models with one-channel convolutions (issue 22, q7): a generator whose channel groups were pruned to one
channel, quantized (QAT or PTQ) through ``lightning_sr.transforms.pt2e_quant`` and compiled by
``lightning_sr.ops.compile.compile_cpu``, runs and agrees with its eager (reference) int8 graph; so does an fp32
model whose one-channel convolution reads another convolution directly. Inductor miscompiles such convolutions
with dynamic sizes (a stride assertion at the first call):
``compile_cpu`` compiles them for fixed sizes. No Trainer: the transforms alone."""

from __future__ import annotations

import pytest
import torch

from lightning_sr.ops.compile import compile_cpu, single_channel_convs
from lightning_sr.transforms import channels
from lightning_sr.transforms import pt2e_quant as quant
from tests.compression_helpers import tiny_generator

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = ((1, 3, 12, 10), (2, 3, 9, 14))  # two sizes: the fixed-size compilation is made for each


def pruned_to_one(keep: dict[str, int]) -> torch.nn.Module:
    """SRResNet-1/8 with channel groups cut to ``keep[group]`` channels by the physical removal of channel sparsity
    (what ``compression=channel_sparsity`` leaves at a tight MAC target, e.g. the q7 smoke run's 8 -> 1 trunk)."""
    gen = tiny_generator(res_blocks=1, channels=8)
    groups = channels.find_groups(gen, None)
    assert set(keep) <= {g.name for g in groups}
    channels.remove_channels(gen, groups, {g.name: list(range(keep[g.name], g.channels)) for g in groups
                                           if g.name in keep})
    return gen.eval()


def int8_of(gen: torch.nn.Module, qat: bool) -> torch.fx.GraphModule:
    gm, _, _ = quant.capture(gen, training=qat)
    prepared = quant.prepare(gm, quant.QuantSettings(), qat=qat)
    quant.set_mode(prepared, True)  # QAT: fake quantization in training form; PTQ: calibration
    g = torch.Generator().manual_seed(1)
    for _ in range(2):
        prepared(torch.rand(2, 3, 16, 20, generator=g))
    quant.set_mode(prepared, False)
    return quant.convert(prepared)


# trunk: the q7 case (the residual add fused into a qconv writes a one-channel trunk that the upsampler reads);
# upsampler.0: one shuffled channel read by the next stage's convolution
@pytest.mark.parametrize("keep,qat", [({"body_tail.0": 1}, True), ({"upsampler.0": 1}, False)],
                         ids=["qat_trunk_1", "ptq_upsampler_1"])
def test_int8_program_with_one_channel_convs_compiles_and_matches_its_reference(keep, qat):
    gen = pruned_to_one(keep)
    int8 = int8_of(gen, qat)
    assert single_channel_convs(int8)  # what compile_cpu looks for is found in the converted graph
    fast = compile_cpu(int8)
    for shape in SIZES:
        x = torch.rand(*shape, generator=torch.Generator().manual_seed(shape[2]))
        with torch.no_grad():
            ref = int8(x)
        y = fast(x)
        assert y.shape == ref.shape == (shape[0], 3, 4 * shape[2], 4 * shape[3])
        assert float((y - ref).abs().max()) < 5e-3


def test_fp32_conv_reading_a_one_channel_conv_compiles_and_matches_eager():
    """fp32 too: a convolution writing one channel (channels-last) read directly by another one (no activation
    between, which the generators here always have; a pointwise op in between writes a contiguous tensor)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(4, 1, 3, padding=1),
                                torch.nn.Conv2d(1, 4, 3, padding=1)).eval()
    assert single_channel_convs(model) == ["2"]
    fast = compile_cpu(model)
    for shape in SIZES:
        x = torch.rand(*shape, generator=torch.Generator().manual_seed(shape[3]))
        with torch.no_grad():
            ref = model(x)
        assert float((fast(x) - ref).abs().max()) < 1e-4


def test_a_model_without_one_channel_convs_keeps_the_dynamic_compilation():
    assert single_channel_convs(tiny_generator(res_blocks=1, channels=8)) == []


def test_two_int8_programs_compiled_and_run_on_the_same_input_tensor():
    """Latencies side by side (lightning_sr.report.latency) give one input tensor to several compiled models. When
    compile_cpu marked the caller's tensor dynamic, q7's smoke int8 programs (SRResNet-16/8, channel-pruned) failed
    when compiled second: a stride check of inductor's int8 convolution. compile_cpu marks an alias now. These toy
    programs do not reproduce the miscompile (the q7 smoke report's latency step in `make test-research` did); the
    check that the caller's tensor stays unmarked fails without the alias."""
    from lightning_sr.cost import compiled_latency_ms

    models = {"wide": int8_of(tiny_generator(res_blocks=1, channels=8).eval(), qat=False),
              "narrow": int8_of(pruned_to_one({"body_tail.0": 4}), qat=True)}
    x = torch.rand(1, 3, 24, 20, generator=torch.Generator().manual_seed(3))
    for name, m in models.items():
        with torch.no_grad():
            ref = m(x)
        assert float((compile_cpu(m)(x) - ref).abs().max()) < 5e-3, name
        assert not hasattr(x, "_dynamo_dynamic_indices"), name  # the caller's tensor is left unmarked
    ms, _ = compiled_latency_ms(models, (3, 24, 20), warmup=1, repeats=2)
    assert sorted(ms) == ["narrow", "wide"] and all(v > 0 for v in ms.values())
