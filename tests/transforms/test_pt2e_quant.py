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
