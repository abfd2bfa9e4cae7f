"""Data-parallel training on torch.distributed: ranks, the process group, and store access.

``train`` and ``fuse`` run unchanged under ``torchrun`` (``python -m torch.distributed.run``):
every rank plans, loads the data and cuts the same global batches with the same seed; the fit
loop (:mod:`registry.fitting`) wraps the model in DistributedDataParallel and gives each rank
its share of every global batch, so a run over N ranks takes the steps a single process with
the same ``--batch-size`` takes. Only rank 0 writes: it builds the drift profile, saves the
weights and registers the version, then hands the result to the other ranks. The others open
the store to read (the members of a fusion, the task's labels), and :func:`forbid_writes` makes
that connection refuse every write.

Backends: NCCL on GPUs (each rank on ``cuda:LOCAL_RANK``), gloo on CPUs.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import InvalidInput, RegistryError

if TYPE_CHECKING:
    from .store import Registry

T = TypeVar("T")

#: Statements a non-zero rank's connection refuses (it only reads).
_WRITES = ("insert", "update", "delete", "create", "drop", "alter", "replace")


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in a torchrun job (one rank of one when not under torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """Return True under torchrun with more than one rank."""
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Return True on rank 0, the one that writes to the store."""
        return self.rank == 0


def ranks() -> Ranks:
    """Return this process's rank from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as err:
        raise InvalidInput(
            f"torchrun's RANK/WORLD_SIZE/LOCAL_RANK are not numbers: {err}.",
            hint="Launch with: torchrun --nproc-per-node N -m registry train ...",
        ) from err
    return Ranks(rank, max(1, world), local)


def rank_device(device: str) -> str:
    """Return the device of this rank: ``cuda:LOCAL_RANK`` for ``cuda`` under torchrun."""
    r = ranks()
    if r.active and device == "cuda":
        return f"cuda:{r.local_rank}"
    return device


def start(device: str) -> Ranks:
    """Join the job's process group (once; NCCL for GPUs, gloo for CPUs); return the ranks.

    A no-op outside torchrun.
    """
    r = ranks()
    if not r.active:
        return r
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        gpu = device.startswith("cuda")
        if gpu:
            torch.cuda.set_device(r.local_rank)
        dist.init_process_group(backend="nccl" if gpu else "gloo")
        atexit.register(stop)
    return r


def open_registry(open_store: Callable[[bool], Registry], device: str) -> Registry:
    """Join the job (see :func:`start`) and open the store the way this rank may use it.

    ``open_store(create)`` opens the registry. Rank 0 opens it first (creating it if need be);
    the other ranks wait for that, then open it with writes refused (:func:`forbid_writes`).
    """
    r = start(device)
    registry = open_store(True) if r.is_main else None
    barrier()
    if registry is None:
        registry = open_store(False)
        forbid_writes(registry)
    return registry


def stop() -> None:
    """Leave the process group if this process joined one, together with the other ranks.

    A rank that tears its group down while another is still using it (rank 0 printing after
    the last broadcast) can make gloo abort the other at exit ("terminate called without an
    active exception", exit -6): every rank first waits for the others, for at most a minute
    (a rank that died is torchrun's to report, not a reason to hang here).
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        if dist.get_world_size() > 1:
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=timedelta(seconds=60))
            else:
                dist.barrier()
    except Exception:  # noqa: BLE001 (leaving anyway: the job's own error was reported)
        pass
    dist.destroy_process_group()


def joined() -> bool:
    """Return True when a process group with more than one rank is running."""
    import torch.distributed as dist

    return bool(dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1)


def is_main() -> bool:
    """Return True unless this process is a rank other than 0 of a running process group."""
    if not joined():
        return True
    import torch.distributed as dist

    return dist.get_rank() == 0


def from_main(value: T) -> T:
    """Return rank 0's ``value`` on every rank (pickled; a no-op without a process group)."""
    if not joined():
        return value
    import torch.distributed as dist

    box: list[Any] = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[no-any-return]


def barrier() -> None:
    """Wait for every rank (a no-op without a process group)."""
    if joined():
        import torch.distributed as dist

        dist.barrier()


def forbid_writes(registry: Registry) -> None:
    """Make ``registry``'s connection refuse every write (for the ranks other than 0).

    SQLite's write lock (``BEGIN IMMEDIATE``) becomes a plain ``BEGIN`` as well, so a reading
    rank never holds up rank 0's writes.
    """
    from sqlalchemy import event

    def guard(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> tuple[str, Any]:
        head = statement.lstrip().split(None, 1)[0].lower() if statement.strip() else ""
        if head in _WRITES:
            raise RegistryError(
                f"Rank {ranks().rank} tried to write to the registry; only rank 0 writes.",
                hint="This is a bug in adapter-registry: please report it.",
            )
        if statement.strip().upper() == "BEGIN IMMEDIATE":
            return "BEGIN", params
        return statement, params

    event.listen(registry.db.engine, "before_cursor_execute", guard, retval=True)


__all__ = [
    "Ranks",
    "barrier",
    "forbid_writes",
    "from_main",
    "is_main",
    "joined",
    "open_registry",
    "rank_device",
    "ranks",
    "start",
    "stop",
]
