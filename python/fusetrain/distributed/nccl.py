"""NCCL through CuPy for CuPy arrays: one communicator over the ranks, bootstrapped by broadcasting
NCCL's unique id over MPI; collectives run on the current CuPy stream unless given another."""
from __future__ import annotations

import numpy as np

from .. import backend


def _types(nccl):
    return {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64,
            np.dtype(np.int32): nccl.NCCL_INT32, np.dtype(np.int64): nccl.NCCL_INT64,
            np.dtype(np.uint8): nccl.NCCL_UINT8, np.dtype(np.int8): nccl.NCCL_INT8,
            np.dtype(np.uint32): nccl.NCCL_UINT32, np.dtype(np.uint64): nccl.NCCL_UINT64}


class Communicator:
    """NCCL's communicator for ``world``, on the GPU this rank uses (``local_rank`` modulo the
    GPUs it sees, made current here): NCCL refuses two ranks on one GPU."""

    def __init__(self, world):
        cp = backend.cupy_module()
        if cp is None:
            raise RuntimeError("collectives on CuPy arrays need CuPy with NCCL (pip install 'fusetrain[cuda]')")
        try:
            from cupy.cuda import nccl
        except ImportError as exc:
            raise RuntimeError(f"CuPy was built without NCCL ({exc}); install a CuPy wheel that brings it") from exc
        if not getattr(nccl, "available", True):
            raise RuntimeError("CuPy's NCCL module is not available; install a CuPy wheel built with NCCL")
        if world.comm is None:
            raise RuntimeError("NCCL needs the ranks of an MPI launch to exchange its id; start the job with mpiexec")
        devices = cp.cuda.runtime.getDeviceCount()
        cp.cuda.Device(world.local_rank % devices).use()
        uid = nccl.get_unique_id() if world.rank == 0 else None
        uid = world.comm.bcast(uid, root=0)
        self.cp, self.nccl = cp, nccl
        self.comm = nccl.NcclCommunicator(world.size, uid, world.rank)
        self._types = _types(nccl)

    def _type(self, array):
        t = self._types.get(np.dtype(array.dtype))
        if t is None:
            raise TypeError(f"NCCL collectives take {sorted(map(str, self._types))} arrays, got {array.dtype}")
        return t

    def _stream(self, stream):
        return (stream or self.cp.cuda.get_current_stream()).ptr

    def all_reduce(self, array, stream=None) -> None:
        """array = its sum over the ranks, in place."""
        self.comm.allReduce(array.data.ptr, array.data.ptr, array.size, self._type(array), self.nccl.NCCL_SUM,
                            self._stream(stream))

    def broadcast(self, array, src, stream=None) -> None:
        self.comm.bcast(array.data.ptr, array.size, self._type(array), src, self._stream(stream))
