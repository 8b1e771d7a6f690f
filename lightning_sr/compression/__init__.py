"""Compression techniques as Lightning callbacks, selected by the ``compression`` config group: *when* a technique
runs in training. *What* it does to the network is :mod:`lightning_sr.transforms` (no Lightning there).

Composed techniques act in the order given on the command line (``compression=[block_prune,channel_prune]``);
see docs/compression.md. Structural ones (block and channel pruning) change the generator once, in
``setup(stage="fit")``, before optimisers exist.
"""
