"""The QAT graph's observers follow its mode, whatever a loaded state dict says (their on/off flags are buffers)."""

from __future__ import annotations

from lightning_sr.transforms import pt2e_quant
from tests.compression_helpers import tiny_generator


def _observing(gm) -> set[int]:
    return {int(m.observer_enabled[0]) for m in gm.modules() if hasattr(m, "observer_enabled")}


def _prepared():
    gm, _, _ = pt2e_quant.capture(tiny_generator(res_blocks=1, channels=8).train(), training=True)
    prepared = pt2e_quant.prepare(gm, pt2e_quant.QuantSettings(), qat=True)
    pt2e_quant.set_mode(prepared, True)
    return prepared


def test_a_state_dict_written_in_eval_mode_does_not_switch_a_training_graphs_observers_off():
    """Lightning writes last.ckpt at a validation step after the validation: the observers are off in it. A resumed
    run loads that into a graph in training mode; sync_observers (the QAT callback calls it at every batch) turns
    them back on, as the uninterrupted run's switch back to training does; frozen observers stay off."""
    saved = _prepared()
    pt2e_quant.set_mode(saved, False)
    assert _observing(saved) == {0}
    resumed = _prepared()
    assert _observing(resumed) == {1}
    resumed.load_state_dict(saved.state_dict())
    assert _observing(resumed) == {0}  # what a resumed run had before the fix: observers off for good
    pt2e_quant.sync_observers(resumed)
    assert _observing(resumed) == {1}
    pt2e_quant.freeze(resumed, observers=True)
    pt2e_quant.sync_observers(resumed)
    assert _observing(resumed) == {0}


def _qat_round_trip(skip: bool, monkeypatch):
    """Capture a batch-norm generator, prepare it for QAT, two training steps around an eval switch, convert: the
    prepared graph, the int8 graph and the int8 output, with or without the skipped torchao pattern families."""
    import torch
    from torchao.quantization.pt2e import qat_utils

    monkeypatch.setattr(pt2e_quant, "SKIP_ABSENT_PATTERNS", skip)
    calls = []  # the conv kinds torchao's conv + batch norm fold really ran for
    fold = qat_utils._fold_conv_bn_qat_helper
    monkeypatch.setattr(qat_utils, "_fold_conv_bn_qat_helper",
                        lambda m, conv_fn, *a, **k: calls.append(conv_fn.__name__) or fold(m, conv_fn, *a, **k))
    torch.manual_seed(0)
    gen = tiny_generator(res_blocks=1, channels=8, norm="batch").train()
    gm, _, _ = pt2e_quant.capture(gen, training=True)
    prepared = pt2e_quant.prepare(gm, pt2e_quant.QuantSettings(), qat=True)
    opt = torch.optim.SGD(prepared.parameters(), lr=1e-2)
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    for _ in range(2):
        pt2e_quant.set_mode(prepared, True)
        opt.zero_grad()
        out = prepared(x)
        (out[0] if isinstance(out, (tuple, list)) else out).mean().backward()
        opt.step()
        pt2e_quant.set_mode(prepared, False)
    code = prepared.code
    int8 = pt2e_quant.convert(prepared)
    with torch.no_grad():
        y = int8(x)
    return code, int8.code, int8.state_dict(), y, list(calls)  # a copy: the next call wraps this counter


def test_skipping_torchaos_unmatchable_patterns_changes_nothing(monkeypatch):
    """pt2e_quant.only_matching_patterns skips the conv kinds, dropout and batch norm rewrites whose op the graph
    lacks: the prepared graph (after train/eval switches), the int8 graph, its tensors and its output equal
    torchao's full path's exactly (a batch-norm generator: the conv + batch norm fuse and fold run)."""
    import torch

    fast = _qat_round_trip(True, monkeypatch)
    full = _qat_round_trip(False, monkeypatch)
    assert fast[4] == ["conv2d"] and sorted(full[4]) == ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d"]
    assert fast[0] == full[0] and fast[1] == full[1]
    assert fast[2].keys() == full[2].keys()
    for k in full[2]:
        a, b = fast[2][k], full[2][k]
        if isinstance(a, torch.Tensor):
            a, b = (t.int_repr() if t.is_quantized else t for t in (a, b))
            assert torch.equal(a, b), k
    out = [o if isinstance(o, torch.Tensor) else o[0] for o in (fast[3], full[3])]
    assert torch.equal(*out)
