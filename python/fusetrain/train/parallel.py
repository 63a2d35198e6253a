"""What the Trainer does differently on several ranks: each rank's share of the data, gradients
averaged, losses, metrics and decisions reduced so every rank agrees, errors that end the job."""
from __future__ import annotations

import contextlib
import traceback
import zlib

import numpy as np

from .. import random as frandom
from ..distributed import world as _world
from ..distributed.reducer import GradientReducer


def for_trainer(trainer):
    """The trainer's strategy now: Single in a world of one, else its DataParallel (kept, so the
    order of backward recorded in one fit serves the next)."""
    w = _world.current()
    if w is None or w.size == 1:
        return SINGLE
    par = trainer.__dict__.get("_data_parallel")
    if par is None or par.world is not w:
        par = DataParallel(w, trainer)
        trainer.__dict__["_data_parallel"] = par
    return par


class Single:
    """One process: the whole data, nothing to share."""

    main = True
    size = 1

    def agree(self):
        return contextlib.nullcontext()

    def guard(self):
        return contextlib.nullcontext()

    def fitting(self, facts):
        return contextlib.nullcontext()

    def agreed(self, exc):
        return exc

    def samples(self, n):
        return n

    def order(self, permutation, n):
        return permutation

    def chunk(self, n):
        return 0, n

    def total(self, batch):
        return batch

    def begin_backward(self):
        pass

    def end_backward(self, loss, batch, stats_ok):
        return loss, stats_ok

    def any(self, flag):
        return bool(flag)

    def sums(self, values: dict) -> dict:
        return values


SINGLE = Single()


def share_size(n, size):
    """How many of n samples each of ``size`` ranks takes per epoch."""
    return -(-n // size)


def share(indices, rank, size):
    """Rank ``rank``'s part of an epoch's ``indices`` (DistributedSampler's): the indices extended
    with their own first ones to a multiple of ``size``, then positions rank, rank + size, ..."""
    return np.resize(indices, share_size(len(indices), size) * size)[rank::size]


def chunk(n, rank, size):
    """Rank ``rank``'s contiguous part of n samples to evaluate (sizes differ by at most one)."""
    return n * rank // size, n * (rank + 1) // size


def rank_seed(seed: int, rank: int) -> int:
    """Rank ``rank``'s dropout seed: rank 0 keeps ``seed`` (what a checkpoint stores), the others
    draw theirs from it, so their masks differ."""
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0])


class DataParallel:
    """Data parallel over ``world``'s ranks (DistributedSampler's semantics for the data).

    Each epoch every rank draws the same permutation of the n samples, extends it with its own
    first samples to a multiple of the number of ranks W (as torch's DistributedSampler does:
    at most W - 1 samples are seen twice in an epoch), and takes the positions r, r + W, ...:
    batch b of every rank together is batch b of one process with W times the batch size.
    """

    def __init__(self, world, trainer):
        self.world, self.trainer = world, trainer
        self.main, self.size, self.rank = world.rank == 0, world.size, world.rank
        self.reducer = GradientReducer(trainer.model, world)
        self._agreed: set = set()

    # ------------------------------------------------------------------ errors
    @contextlib.contextmanager
    def agree(self):
        """Run the block on every rank; if it raised on any, raise on all (its own error on the
        ranks where it failed, a RuntimeError naming the first failed rank elsewhere)."""
        error = None
        try:
            yield
        except BaseException as exc:  # noqa: B036 (every rank must vote, whatever it was)
            error = exc
        votes = self.world.gather_objects(None if error is None else f"{type(error).__name__}: {error}")
        if error is not None:
            raise _world.raised_on_every_rank(error)
        failed = [(r, v) for r, v in enumerate(votes) if v is not None]
        if failed:
            r, message = failed[0]
            raise _world.raised_on_every_rank(RuntimeError(
                f"rank {r} of {self.size} refused the call ({message}); nothing was done on any rank"))

    @contextlib.contextmanager
    def guard(self):
        """An exception on this rank alone would leave the others waiting in their next collective:
        end the whole job, naming this rank (the ones every rank raises alike pass)."""
        try:
            yield
        except BaseException as exc:
            if id(exc) in self._agreed or getattr(exc, "fusetrain_every_rank", False):
                raise
            self.world.abort(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}".rstrip())

    def agreed(self, exc):
        """Mark ``exc`` as raised by every rank alike (a decision taken on reduced values)."""
        self._agreed.add(id(exc))
        return _world.raised_on_every_rank(exc)

    # ------------------------------------------------------------------ fit set-up
    @contextlib.contextmanager
    def fitting(self, facts: dict):
        """Check that every rank fits the same way, start all replicas from rank 0's (weights,
        buffers, random streams), and average gradients over the ranks until the block ends."""
        trainer = self.trainer
        facts = dict(facts, **{"the number of parameters": sum(p.size for p in trainer.model.parameters()),
                               "the optimizer's state": _fingerprint(trainer.optimizer.state_dict())})
        everyone = self.world.gather_objects(facts)
        for key in facts:
            values = [f[key] for f in everyone]
            if any(v != values[0] for v in values):
                each = ", ".join(f"rank {r}: {v}" for r, v in enumerate(values))
                raise ValueError(f"the ranks disagree on {key} ({each}); every rank must build the same model and "
                                 "optimizer, load the same checkpoint and call fit with data of the same sizes and "
                                 "the same settings")
        self._agreed.clear()
        with self.guard():
            with frandom.use_stream(trainer.rng):
                state = self.world.broadcast_object(frandom.get_rng_state() if self.main else None)
                frandom.set_rng_state(dict(state, seed=str(rank_seed(int(state["seed"]), self.rank))))
            self.reducer.broadcast_state(0)
            self.reducer.attach()
            try:
                yield
            finally:
                self.reducer.detach()

    # ------------------------------------------------------------------ data
    def samples(self, n):
        return share_size(n, self.size)

    def order(self, permutation, n):
        """This rank's sample indices for the epoch (of the permutation, or of 0..n-1 without shuffling)."""
        return share(np.arange(n) if permutation is None else permutation, self.rank, self.size)

    def chunk(self, n):
        return chunk(n, self.rank, self.size)

    def total(self, batch):
        """Samples in a step over all ranks (every rank's batch has the same size)."""
        return batch * self.size

    # ------------------------------------------------------------------ steps
    def begin_backward(self):
        self.reducer.begin()

    def end_backward(self, loss, batch, stats_ok):
        """Wait for the averaged gradients; returns the loss over the whole global batch and
        whether every rank's batchnorm statistics are finite (one message with the gradients')."""
        loss_sum, count, bad = self.reducer.finish([float(loss) * batch, float(batch), 0.0 if stats_ok else 1.0])
        return loss_sum / count, bad == 0

    def any(self, flag):
        """Whether ``flag`` is set on any rank."""
        return self.world.sum_floats([1.0 if flag else 0.0])[0] > 0

    def sums(self, values: dict) -> dict:
        """Each value summed over the ranks."""
        return dict(zip(values, self.world.sum_floats(list(values.values()))))


def _fingerprint(state) -> int:
    """A checksum of an optimizer's state_dict (hyper-parameters and state arrays)."""
    crc = 0
    for key in sorted(state["state"], key=str):
        for name, v in sorted(state["state"][key].items()):
            crc = zlib.crc32(f"{key}/{name}".encode(), crc)
            crc = zlib.crc32(np.ascontiguousarray(v).tobytes() if hasattr(v, "shape") else repr(v).encode(), crc)
    return zlib.crc32(repr(state["param_groups"]).encode(), crc)
