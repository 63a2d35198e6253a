"""Global random state: one seed drives weight init, shuffling and dropout masks.

``manual_seed(s)`` resets all of them, so the same code after the same seed gives the same
numbers. Dropout masks are Philox4x32-10 streams keyed by the seed; each call takes the next
``offset`` (in elements, aligned to 4), which is what makes a mask reproducible on CPU and GPU.
"""
from __future__ import annotations

import json
import os

import numpy as np

_MASK64 = (1 << 64) - 1


class _State:
    def __init__(self, seed: int):
        self.seed = int(seed) & _MASK64
        self.generator = np.random.Generator(np.random.PCG64(self.seed))
        self.philox_offset = 0


_state = _State(int.from_bytes(os.urandom(8), "little"))


def manual_seed(seed: int) -> None:
    """Seed every random stream of fusetrain (init, shuffling, dropout)."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    global _state
    _state = _State(int(seed))


def initial_seed() -> int:
    return _state.seed


def default_generator() -> np.random.Generator:
    """The NumPy generator used for initialization and shuffling."""
    return _state.generator


def next_philox(n: int) -> tuple[int, int]:
    """Reserve ``n`` dropout draws: returns (seed, offset) and advances the offset."""
    offset = _state.philox_offset
    _state.philox_offset += (int(n) + 3) // 4 * 4
    return _state.seed, offset


def get_rng_state() -> dict:
    """A pickle-free snapshot (strings and ints) of every stream, for checkpoints."""
    return {
        "seed": str(_state.seed),
        "philox_offset": str(_state.philox_offset),
        "generator": json.dumps(_state.generator.bit_generator.state),
    }


def set_rng_state(state: dict) -> None:
    try:
        seed = int(str(state["seed"]))
        offset = int(str(state["philox_offset"]))
        gen_state = json.loads(str(state["generator"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"invalid RNG state: {exc}") from exc
    global _state
    new = _State(seed)
    new.philox_offset = offset
    new.generator.bit_generator.state = gen_state
    _state = new
