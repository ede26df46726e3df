"""Seeds and op determinism, so the same config, data and seed give the same bytes.

Each piece of work seeds itself from what it is (the run's seed, the model, the fold, the
phase, the epoch), never from whatever random state earlier work left behind. A resumed
run skips finished work and so consumes less randomness on its way to the next fold or
epoch; seeding by identity makes it draw exactly what an uninterrupted run draws there.
"""

from __future__ import annotations

import hashlib

import numpy as np

from kit.tfquiet import import_keras

SEED_STATE = "seed_generator_state"   # the variable every Keras SeedGenerator (Dropout, ...) keeps


def derive(seed: int, *parts) -> int:
    """A 31-bit seed for one piece of work, from the run's seed and the work's name."""
    words = [seed & 0xFFFFFFFF] + [_word(part) for part in parts]
    return int(np.random.SeedSequence(words).generate_state(1)[0] & 0x7FFFFFFF)


def _word(part) -> int:
    if isinstance(part, (int, np.integer)):
        return int(part) & 0xFFFFFFFF
    return int.from_bytes(hashlib.blake2b(str(part).encode(), digest_size=4).digest(), "big")


def start(config) -> None:
    """Seed Python, NumPy and TensorFlow from the run's seed; op determinism when configured.

    Determinism stays on for the rest of the process once enabled: every command is its own
    process, and TensorFlow has no public switch to turn it off again.
    """
    import_keras().utils.set_random_seed(config.seed)
    if config.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def seed_work(seed: int, *parts) -> None:
    """Reset every global generator to the seed of this piece of work (a model's fold, say)."""
    import_keras().utils.set_random_seed(derive(seed, *parts))


def reseed_model(model, seed: int, *parts) -> None:
    """Set each Dropout-style SeedGenerator in `model` to a state derived from `parts`.

    Keras does not save these states in .keras files, so a model loaded to resume would
    otherwise draw other dropout masks than the uninterrupted run did.
    """
    states = [v for v in model.variables if v.path.endswith(SEED_STATE)]
    for i, state in enumerate(states):
        state.assign(np.array([derive(seed, *parts, i), 0], dtype=state.dtype))
