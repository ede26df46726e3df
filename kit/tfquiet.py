"""Import TensorFlow without its start-up chatter.

TensorFlow's C++ side logs to fd 2 before absl is initialised, so TF_CPP_MIN_LOG_LEVEL
cannot silence "oneDNN custom operations are on" or "Could not find cuda drivers". We
capture fd 2 while TensorFlow loads and looks for GPUs, then pass on every line that is
not one of those known notices, so real errors still reach the user.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

from kit.errors import KitError

# absl's prefix (E1201 20:10:43.658155 ...) from TensorFlow 2.19 on; a timestamp (2026-12-01 20:10:43.658155: E
# ...) before that.
NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)"
    r"|([IWE]\d{4} |\d{4}-\d\d-\d\d [\d:.]+: [IWE] )"
    r".*(port\.cc|cudart_stub\.cc|cuda_platform\.cc|cuda_executor|cpu_feature_guard|cuda_driver\.cc|"
    r"cuda_dnn\.cc|cuda_blas\.cc|cuda_fft\.cc|computation_placer|tensorflow/core/util/port))"
)

LOGICAL_DEVICES_ENV = "KIT_LOGICAL_DEVICES"   # a testing aid: split the CPU into N devices (kit.run.accel)


def import_keras():
    """Import tensorflow and keras once, quietly; return keras."""
    if "keras" in sys.modules and "tensorflow" in sys.modules:
        return sys.modules["keras"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            split_cpu(tf)   # must come before anything starts TensorFlow's runtime
            tf.config.list_physical_devices("GPU")
            import keras
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines():
                if line.strip() and not NOISE.match(line):
                    print(line, file=sys.stderr)
    return keras


def keras_verbosity() -> int:
    """A live progress bar on a terminal; one line an epoch in logs and CI."""
    return 1 if sys.stdout.isatty() else 2


def split_cpu(tf) -> None:
    """Apply KIT_LOGICAL_DEVICES; called as TensorFlow is imported, before its runtime starts."""
    count = logical_device_count()
    if count < 2:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    wanted = [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    if tf.config.get_logical_device_configuration(cpu) == wanted:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, wanted)
    except RuntimeError:
        raise KitError(f"{LOGICAL_DEVICES_ENV}={count} came too late: TensorFlow had already started; "
                       "set it before the command starts") from None


def logical_device_count() -> int:
    text = os.environ.get(LOGICAL_DEVICES_ENV, "").strip()
    if not text:
        return 1
    if not text.isdigit() or int(text) < 1:
        raise KitError(f"{LOGICAL_DEVICES_ENV} must be a whole number of CPU devices (1 or more), got {text!r}")
    return int(text)
