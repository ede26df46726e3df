"""GPUs when there are any: a distribution strategy over all of them, and mixed precision.

On a CPU-only machine both are no-ops, so the same code runs here, in tests and on Kaggle.
`KIT_LOGICAL_DEVICES=N` (a testing aid) splits the CPU into N logical devices and mirrors over
them, so the multi-replica path Kaggle's two T4s take is exercised on a machine without a GPU.
"""

from __future__ import annotations

import contextlib
import functools

from kit.tfquiet import import_keras, logical_device_count, split_cpu


def gpus() -> list:
    import_keras()
    import tensorflow as tf

    return tf.config.list_physical_devices("GPU")


@functools.lru_cache(maxsize=None)
def strategy():
    """MirroredStrategy across every visible GPU (Kaggle's T4 x2), or across KIT_LOGICAL_DEVICES CPU devices;
    the default strategy otherwise.

    One per process: a second MirroredStrategy numbers its collective ops afresh, and a model trained
    under it after one loaded under the first failed its first all-reduce (a shape mismatch; TF 2.21).
    """
    import_keras()
    import tensorflow as tf

    if len(gpus()) > 1:
        return tf.distribute.MirroredStrategy()
    split_cpu(tf)   # TensorFlow may have been imported by something other than import_keras
    cpus = tf.config.list_logical_devices("CPU")
    if not gpus() and logical_device_count() > 1 and len(cpus) > 1:
        return tf.distribute.MirroredStrategy(devices=[d.name for d in cpus])
    return tf.distribute.get_strategy()


def precision_policy(mode: str = "auto") -> str:
    """mixed_float16 on GPUs (about 2x on tensor cores), float32 on CPUs where it would be slower."""
    use_mixed = mode == "mixed" or (mode == "auto" and bool(gpus()))
    return "mixed_float16" if use_mixed else "float32"


@contextlib.contextmanager
def precision(mode: str = "auto"):
    """Keras' global dtype policy for the block, the caller's restored afterwards (models built inside keep theirs)."""
    keras = import_keras()
    before = keras.mixed_precision.global_policy()
    policy = precision_policy(mode)
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield policy
    finally:
        keras.mixed_precision.set_global_policy(before)
