"""The process group: which rank this process is, how many there are, and the collectives on
NumPy arrays (MPI through mpi4py) and CuPy arrays (NCCL through CuPy), imported only when used."""
from __future__ import annotations

import os
import sys
import traceback

import numpy as np

from .. import backend

# Variables the usual launchers set in every process they start: MPICH's and Intel MPI's hydra
# (PMI_*), Open MPI (OMPI_*, PMIX_*), MVAPICH (MV2_*). Their presence is how a process knows it is
# one of several; a plain `python script.py` has none and is a world of one without MPI.
LAUNCHER_VARIABLES = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MV2_COMM_WORLD_SIZE",
                      "MPI_LOCALNRANKS")
OPS = ("sum", "mean")
BACKENDS = ("mpi", "nccl")

_world = None


def launched_by_mpi() -> bool:
    """True when an MPI launcher started this process, or the program already initialized MPI itself."""
    if any(v in os.environ for v in LAUNCHER_VARIABLES):
        return True
    mpi = sys.modules.get("mpi4py.MPI")
    return mpi is not None and mpi.Is_initialized()


def launcher_rank() -> int:
    """This process's rank as the MPI launcher's environment says, before (or without) ``init``;
    0 in a plain process."""
    for name in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK"):
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def raised_on_every_rank(exc):
    """Mark ``exc`` as one that every rank raises alike (no rank is left waiting): the CLI then
    reports it once, from rank 0, instead of aborting the job."""
    try:
        exc.fusetrain_every_rank = True
    except AttributeError:  # an exception type without a __dict__: it is reported per rank
        pass
    return exc


def current():
    """The World this process joined with ``init``, or None."""
    return _world


def is_main_process() -> bool:
    """True on rank 0, and in a process that did not join a process group: the one that prints and writes files."""
    return _world is None or _world.rank == 0


def init(backend_name=None, abort_on_exception=True):
    """Join the MPI world (see ``fusetrain.distributed.init``); returns the World."""
    global _world
    if backend_name is not None and backend_name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} or None, got {backend_name!r}")
    if not isinstance(abort_on_exception, bool):
        raise TypeError(f"abort_on_exception must be a bool, got {type(abort_on_exception).__name__}")
    if _world is None:
        _world = World(_mpi() if launched_by_mpi() else None)
        if abort_on_exception and _world.size > 1:
            _install_excepthook(_world)
    if backend_name == "nccl":
        _world.nccl()
    return _world


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError("this process was started by an MPI launcher (mpiexec/mpirun), but mpi4py cannot be "
                          f"imported ({exc}); install it with: pip install 'fusetrain[mpi]'") from exc
    return MPI


class World:
    """This process's place among the ranks; ``mpi`` is None in a world of one without MPI."""

    def __init__(self, mpi):
        self.mpi = mpi
        if mpi is None:
            self.comm = None
            self.rank, self.size, self.local_rank = 0, 1, 0
        else:
            # A communicator of our own: the user's messages on COMM_WORLD never meet ours.
            self.comm = mpi.COMM_WORLD.Dup()
            self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
            node = self.comm.Split_type(mpi.COMM_TYPE_SHARED)
            self.local_rank = node.Get_rank()
            node.Free()
        self._nccl = None

    # ------------------------------------------------------------------ host (MPI) collectives
    def barrier(self) -> None:
        if self.comm is not None:
            self.comm.Barrier()

    def all_reduce(self, array, op="sum"):
        """In place: every rank ends with the elementwise sum (or mean) over the ranks."""
        array = check_array(array, "array")
        if op not in OPS:
            raise ValueError(f"op must be one of {OPS}, got {op!r}")
        if op == "mean" and array.dtype.kind != "f":
            raise TypeError(f"op='mean' needs a floating-point array (the mean is written in place), got {array.dtype}")
        if self.size > 1 and array.size:
            if backend.is_cuda_array(array):
                self.nccl().all_reduce(array)
            else:
                self.comm.Allreduce(self.mpi.IN_PLACE, array, op=self.mpi.SUM)
        if op == "mean" and self.size > 1:
            array *= array.dtype.type(1.0 / self.size)
        return array

    def broadcast(self, array, src=0):
        """In place: every rank ends with rank ``src``'s values."""
        array = check_array(array, "array")
        if isinstance(src, bool) or not isinstance(src, (int, np.integer)) or not 0 <= src < self.size:
            raise ValueError(f"src must be a rank in [0, {self.size}), got {src!r}")
        if self.size > 1 and array.size:
            if backend.is_cuda_array(array):
                self.nccl().broadcast(array, int(src))
            else:
                self.comm.Bcast(array, root=int(src))
        return array

    def gather_objects(self, obj) -> list:
        """Every rank's ``obj`` (small picklable values), in rank order, on every rank."""
        return [obj] if self.comm is None else self.comm.allgather(obj)

    def broadcast_object(self, obj, src=0):
        return obj if self.comm is None else self.comm.bcast(obj, root=src)

    def sum_floats(self, values):
        """The per-position sums over the ranks of a list of floats (float64, one message)."""
        a = np.array(values, dtype=np.float64)
        if self.size > 1 and a.size:
            self.comm.Allreduce(self.mpi.IN_PLACE, a, op=self.mpi.SUM)
        return a.tolist()

    # ------------------------------------------------------------------ GPU (NCCL) collectives
    def nccl(self):
        """The NCCL communicator of the ranks, created at first use (every rank must get here)."""
        if self._nccl is None:
            from .nccl import Communicator  # CuPy is imported only for GPU work
            self._nccl = Communicator(self)
        return self._nccl

    # ------------------------------------------------------------------ failure
    def abort(self, message, exitcode=1):
        """Print ``message`` naming this rank, then end every rank of the job (MPI_Abort)."""
        sys.stdout.flush()
        sys.stderr.write(f"fusetrain.distributed: rank {self.rank} of {self.size}: {message}\n"
                         f"fusetrain.distributed: aborting all {self.size} ranks\n")
        sys.stderr.flush()
        if self.mpi is None:
            raise SystemExit(exitcode)
        self.mpi.COMM_WORLD.Abort(exitcode)


def check_array(array, name):
    """A NumPy or CuPy array that a collective can fill in place."""
    if isinstance(array, np.ndarray):
        if not array.flags.c_contiguous or not array.flags.writeable:
            raise ValueError(f"{name} must be a C-contiguous, writeable array (the result is written in place), got "
                             f"one with strides {array.strides} and writeable={array.flags.writeable}")
    elif backend.is_cuda_array(array):
        if not array.flags.c_contiguous:
            raise ValueError(f"{name} must be a C-contiguous CuPy array (the result is written in place)")
    else:
        raise TypeError(f"{name} must be a NumPy or CuPy array, got {type(array).__name__}")
    if array.dtype.kind not in "fiu" or array.dtype == np.float16:
        raise TypeError(f"{name} must hold integers, float32 or float64 values, got dtype {array.dtype}")
    return array


def _install_excepthook(world):
    """An exception nobody caught on one rank would leave the others waiting in a collective
    forever: print it as usual, then abort the whole job naming the rank."""
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        try:
            previous(exc_type, exc, tb)
        except Exception:
            traceback.print_exception(exc_type, exc, tb)
        world.abort(f"uncaught {exc_type.__name__}: {exc}")

    sys.excepthook = hook
