"""GPUs when there are any: a distribution strategy over all of them, and mixed precision.

On a CPU-only machine both are no-ops, so the same code runs here, in tests and on Kaggle.
"""

from __future__ import annotations

from kit.tfquiet import import_keras


def gpus() -> list:
    import_keras()
    import tensorflow as tf

    return tf.config.list_physical_devices("GPU")


def strategy():
    """MirroredStrategy across every visible GPU (Kaggle's T4 x2), the default strategy otherwise."""
    import_keras()
    import tensorflow as tf

    return tf.distribute.MirroredStrategy() if len(gpus()) > 1 else tf.distribute.get_strategy()


def precision_policy(mode: str = "auto") -> str:
    """mixed_float16 on GPUs (about 2x on tensor cores), float32 on CPUs where it would be slower."""
    use_mixed = mode == "mixed" or (mode == "auto" and bool(gpus()))
    return "mixed_float16" if use_mixed else "float32"


def set_precision(mode: str = "auto") -> str:
    keras = import_keras()
    policy = precision_policy(mode)
    keras.mixed_precision.set_global_policy(policy)
    return policy
