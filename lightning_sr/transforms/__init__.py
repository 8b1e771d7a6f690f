"""What a compression technique does to a network, as plain ``nn.Module -> nn.Module`` functions.

No Lightning here (a test enforces it): each transform runs and is tested without a Trainer. The callbacks of
:mod:`lightning_sr.compression` decide *when* they run in training. pt2e_quant.py (the SR quantizer, PT2E capture,
prepare, convert), eager_quant.py (the same fake quantizers on an eager, gated generator), int8_io.py (the int8
artefact and its description), channels.py (channel groups, the channel plan, physical removal, PixelShuffle
stages, MAC counting, gate folding), blocks.py (residual-block scores and removal).
"""
