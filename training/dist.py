"""Several processes under ``torchrun``: who does what, and how they wait for each other.

``torchrun --nproc_per_node=N -m training gpl --config FILE`` starts N copies of the command.
Every copy walks through the same stages; this module tells each one its rank, splits shard
work between them (shard k on rank k mod N), lets rank 0 alone write markers, checkpoints and
exports, and holds the others at the end of each stage until rank 0 is done. A failure on one
rank is sent to every rank, so they all stop with the same one-line error instead of waiting
for a peer that is gone.

Without ``torchrun`` (no ``WORLD_SIZE`` above 1 in the environment) everything here is a no-op
and the command runs as one process.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from training.errors import StageError

T = TypeVar("T")

#: How long a rank waits for rank 0 at the end of a stage it does not share (mining, export, the
#: before/after evaluation): long enough for any of them at the reference corpus size.
WAIT = datetime.timedelta(hours=6)


@dataclass(frozen=True)
class Ranks:
    """This process's place among the processes ``torchrun`` started."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def owns(self, shard_no: int) -> bool:
        """Whether this rank computes shard ``shard_no`` (shard k on rank k mod N)."""
        return shard_no % self.world == self.rank


SINGLE = Ranks()
_control_group = None


def from_env() -> Ranks:
    """The ranks ``torchrun`` put in the environment (one process when there are none)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return SINGLE
    return Ranks(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def start(device: str) -> Ranks:
    """Join the process group ``torchrun`` set up (NCCL on GPUs, gloo on CPUs) and pick this rank's GPU.

    The trainer later reuses the same group for DDP. Waiting between stages goes through a
    separate gloo group with a long timeout, so a rank idling while rank 0 mines or exports is
    not taken for a hung one.
    """
    global _control_group
    ranks = from_env()
    if not ranks.distributed:
        return ranks
    import torch
    import torch.distributed as torch_dist

    if device == "cuda":
        torch.cuda.set_device(ranks.local_rank)
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if device == "cuda" else "gloo", timeout=WAIT)
    if _control_group is None:
        _control_group = torch_dist.new_group(backend="gloo", timeout=WAIT)
    return ranks


def _gather(value) -> list:
    import torch.distributed as torch_dist

    out: list = [None] * torch_dist.get_world_size()
    torch_dist.all_gather_object(out, value, group=_control_group)
    return out


def agree(ranks: Ranks, error: str | None) -> None:
    """Every rank reports its error (None: fine); if any rank failed, all raise the first error.

    Also a barrier: no rank leaves before every rank arrived.
    """
    if not ranks.distributed:
        if error:
            raise StageError(error)
        return
    errors = [e for e in _gather(error) if e]
    if errors:
        raise StageError(errors[0])


def on_main(ranks: Ranks, work: Callable[[], T]) -> T:
    """Run ``work`` on rank 0 only; every rank gets its result (or rank 0's error) when it is done."""
    if not ranks.distributed:
        return work()
    result, error = None, None
    if ranks.is_main:
        try:
            result = work()
        except Exception as exc:  # sent to the other ranks, then raised here as it was
            error = str(exc) or exc.__class__.__name__
            _gather((None, error))
            raise
    gathered = _gather((result, error))
    result, error = gathered[0]
    if error:
        raise StageError(error)
    return result


def total(ranks: Ranks, value: float) -> float:
    """The sum of ``value`` over all ranks (work counted where it was done)."""
    return sum(_gather(value)) if ranks.distributed else value
