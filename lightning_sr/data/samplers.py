"""Samplers that make training resumable and DDP-correct.

* :class:`ResumableSampler` hands out *global sample numbers* that continue from the trainer's
  global step, sharded over ranks. The training dataset derives image, crop and augmentation from
  (seed, sample number) alone, so a run resumed from a checkpoint sees exactly the samples the
  uninterrupted run would have seen next: no replay, no skip, whatever the epoch bookkeeping.
* :class:`ShardSampler` splits evaluation images over ranks without padding (rank r takes r, r+W, ...),
  so no image is evaluated twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    def __init__(self, length: int, batch_size: int, step_fn: Callable[[], int], rank: int = 0, world: int = 1):
        self.length, self.batch_size, self.step_fn, self.rank, self.world = length, batch_size, step_fn, rank, world

    def __iter__(self) -> Iterator[int]:
        start = int(self.step_fn()) * self.batch_size * self.world
        for k in range(self.length):
            yield start + k * self.world + self.rank

    def __len__(self) -> int:
        return self.length


class ShardSampler(Sampler[int]):
    def __init__(self, n: int, rank: int = 0, world: int = 1):
        self.n, self.rank, self.world = n, rank, world

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))
