"""Eager fake quantization (issue 18, item 11): the gated generator trains with the int8 recipe's own fake quantizers
from step 0, and at the removal hands its ranges to the captured PT2E graph, which then computes the same thing."""

from __future__ import annotations

import torch

from lightning_sr.transforms import eager_quant, pt2e_quant
from tests.compression_helpers import tiny_generator

X = torch.rand(4, 3, 16, 20, generator=torch.Generator().manual_seed(0))


def _first(y):
    return y[0] if isinstance(y, (tuple, list)) else y


def calibrated(seed: int = 0, **kw) -> torch.nn.Module:
    gen = tiny_generator(seed=seed, res_blocks=2, channels=8, **kw).train()
    eager_quant.attach(gen, pt2e_quant.QuantSettings())
    with torch.no_grad():
        for _ in range(3):
            gen(X)
    return gen.eval()


def test_the_fake_quantizers_leave_the_state_dict_alone_and_come_off_exactly():
    plain = tiny_generator(res_blocks=2, channels=8).eval()
    with torch.no_grad():
        ref = plain(X)
    keys = list(plain.state_dict())
    gen = calibrated()
    assert list(gen.state_dict()) == keys  # checkpoints and channel surgery see the plain model
    layers = eager_quant.attached(gen)
    assert {"head.0", "body.0.conv1", "body.0.act", "tail"} <= set(layers) and "weight" in layers["tail"]
    with torch.no_grad():
        fq = gen(X)
    assert float((fq - ref).abs().max()) > 1 / 255  # it does quantize
    saved = eager_quant.detach(gen)
    assert not eager_quant.attached(gen) and set(saved) == set(layers)
    with torch.no_grad():
        assert torch.equal(gen(X), ref)


def test_observed_ranges_are_restored_by_name_and_follow_train_and_eval():
    gen = calibrated()
    with torch.no_grad():
        ref = gen(X)
        saved = eager_quant.states(gen)
        gen(X * 3)  # eval: observers off, nothing changes
        assert torch.equal(gen(X), ref)
    again = tiny_generator(res_blocks=2, channels=8).eval()
    eager_quant.attach(again, pt2e_quant.QuantSettings())
    eager_quant.load_states(again, saved)
    with torch.no_grad():
        assert torch.equal(again(X), ref)
        gen.train()
        gen(X * 3)  # training: the observers move
        gen.eval()
        assert not torch.equal(gen(X), ref)


def test_the_captured_graph_with_carried_ranges_computes_what_the_eager_network_computed():
    """The hand-over at the removal: capture, prepare for QAT, carry the activation ranges, observe the weights; in
    eval mode the graph's output equals the eager fake-quantized network's (the same fake quantizers, the same
    ranges, at the same places)."""
    gen = calibrated()
    with torch.no_grad():
        eager = gen(X)
    saved = eager_quant.detach(gen)
    gm, _, _ = pt2e_quant.capture(gen, training=True)
    prepared = pt2e_quant.prepare(gm, pt2e_quant.QuantSettings(), qat=True)
    carried = eager_quant.carry_ranges(prepared, saved)
    assert set(carried) == set(saved)  # every eager layer found its place in the graph
    assert eager_quant.observe_weights(prepared) == sum("weight" in v for v in saved.values())
    pt2e_quant.set_mode(prepared, False)
    with torch.no_grad():
        graph = _first(prepared(X))
    assert float((graph - eager).abs().max()) < 1e-5
