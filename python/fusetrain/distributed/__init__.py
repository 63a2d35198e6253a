"""fusetrain.distributed: data-parallel training on MPI (mpi4py, NumPy arrays) and NCCL (CuPy arrays),
with PyTorch's names. ``import fusetrain`` does not import mpi4py; ``init()`` does, under a launcher.

    mpiexec -n 2 python train.py          # in train.py: import fusetrain.distributed as dist; dist.init()

``init()`` joins the MPI world when an MPI launcher (mpiexec, mpirun) started the process; a
plain process is a world of one and needs no MPI. Then ``Trainer.fit`` trains data parallel,
``DistributedDataParallel`` averages gradients in hand-written loops and ``nn.SyncBatchNorm``
takes its batch statistics over all ranks.
"""
from __future__ import annotations

from . import world as _world
from .ddp import DistributedDataParallel


def init(backend=None, abort_on_exception=True):
    """Join the process group (once; later calls return at once).

    ``backend``: None or ``"mpi"`` (MPI for NumPy arrays; NCCL is set up when a CuPy array first
    takes part in a collective) or ``"nccl"`` (also set up NCCL now, each rank on GPU
    ``local_rank % GPU count``). Under a launcher mpi4py must be installed
    (``pip install "fusetrain[mpi]"``). ``abort_on_exception``: with more than one rank, an
    exception nobody catches is printed as usual and then ends every rank of the job
    (MPI_Abort, with a message naming the rank) instead of leaving the others waiting forever
    in their next collective; this replaces ``sys.excepthook`` (chaining to the previous one).
    """
    _world.init(backend, abort_on_exception)


def is_initialized() -> bool:
    return _world.current() is not None


def _joined():
    w = _world.current()
    if w is None:
        raise RuntimeError("the process group is not initialized: call fusetrain.distributed.init() first")
    return w


def get_rank() -> int:
    """This process's rank, 0 .. world size - 1."""
    return _joined().rank


def get_world_size() -> int:
    return _joined().size


def get_local_rank() -> int:
    """This process's rank among the ranks on its machine (which GPU it takes)."""
    return _joined().local_rank


def barrier() -> None:
    """Wait until every rank has called barrier()."""
    _joined().barrier()


def broadcast(array, src=0):
    """Overwrite ``array`` (NumPy or CuPy, C-contiguous) on every rank with rank ``src``'s; returns it."""
    return _joined().broadcast(array, src)


def all_reduce(array, op="sum"):
    """Replace ``array`` (NumPy or CuPy, C-contiguous) on every rank by its elementwise sum over
    the ranks (``op="sum"``) or mean (``op="mean"``, floating arrays); in place, returns it."""
    return _joined().all_reduce(array, op)


__all__ = ["DistributedDataParallel", "all_reduce", "barrier", "broadcast", "get_local_rank", "get_rank",
           "get_world_size", "init", "is_initialized"]
