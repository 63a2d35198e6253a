"""Random state: one seed drives weight init, shuffling and dropout masks.

``manual_seed(s)`` resets the global streams, so the same code after the same seed gives the same
numbers. Dropout masks are Philox4x32-10 streams keyed by the seed; each call takes the next
``offset`` (in elements, aligned to 4), which is what makes a mask reproducible on CPU and GPU.

A ``Stream`` is an independent set of these streams. Inside ``with use_stream(s):`` the current
thread draws from ``s`` instead of the global state (other threads are not affected): each
``Trainer`` trains inside its own stream, so two fits in two threads do not take numbers from
each other, and a fit's shuffling and dropout are a function of its own seed alone.
"""
from __future__ import annotations

import contextlib
import json
import os
import threading

import numpy as np

from .ops import _check

_MASK64 = (1 << 64) - 1


class _State:
    def __init__(self, seed: int):
        self.seed = int(seed) & _MASK64
        self.generator = np.random.Generator(np.random.PCG64(self.seed))
        self.philox_offset = 0


_state = _State(int.from_bytes(os.urandom(8), "little"))
_local = threading.local()


class Stream:
    """An independent set of random streams (shuffling and initialization generator, dropout's
    Philox seed and offset), used through ``use_stream``."""

    def __init__(self, seed: int):
        self._state = _State(_check.integer(seed, "seed"))


def _current() -> _State:
    stream = getattr(_local, "stream", None)
    return _state if stream is None else stream._state


@contextlib.contextmanager
def use_stream(stream: Stream):
    """Within the block, this thread's random draws (and get/set_rng_state) use ``stream``."""
    if not isinstance(stream, Stream):
        raise TypeError(f"stream must be a fusetrain.random.Stream, got {type(stream).__name__}")
    previous = getattr(_local, "stream", None)
    _local.stream = stream
    try:
        yield stream
    finally:
        _local.stream = previous


def manual_seed(seed: int) -> None:
    """Seed the global random streams of fusetrain (init, shuffling, dropout); a thread inside
    ``use_stream`` (a Trainer's fit) keeps its own stream."""
    global _state
    _state = _State(_check.integer(seed, "seed"))


def initial_seed() -> int:
    return _current().seed


def default_generator() -> np.random.Generator:
    """The NumPy generator used for initialization and shuffling."""
    return _current().generator


def next_philox(n: int) -> tuple[int, int]:
    """Reserve ``n`` dropout draws: returns (seed, offset) and advances the offset."""
    state = _current()
    offset = state.philox_offset
    state.philox_offset += (int(n) + 3) // 4 * 4
    return state.seed, offset


def get_rng_state() -> dict:
    """A pickle-free snapshot (strings and ints) of the current streams, for checkpoints."""
    state = _current()
    return {
        "seed": str(state.seed),
        "philox_offset": str(state.philox_offset),
        "generator": json.dumps(state.generator.bit_generator.state),
    }


def set_rng_state(state: dict) -> None:
    """Restore a get_rng_state snapshot into the current streams."""
    global _state
    try:
        seed = int(str(state["seed"]))
        offset = int(str(state["philox_offset"]))
        gen_state = json.loads(str(state["generator"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"invalid RNG state: {exc}") from exc
    new = _State(seed)
    new.philox_offset = offset
    new.generator.bit_generator.state = gen_state
    stream = getattr(_local, "stream", None)
    if stream is None:
        _state = new
    else:
        stream._state = new
