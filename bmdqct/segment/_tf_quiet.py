"""Import TensorFlow without its start-up noise on stderr.

TensorFlow >= 2.16 logs through Abseil's C++ logging, which writes everything
logged before ``absl::InitializeLog()`` straight to file descriptor 2, whatever
``TF_CPP_MIN_LOG_LEVEL`` says: the oneDNN notice, "Could not find cuda drivers",
and, when the devices are first listed, ``failed call to cuInit``. So the
import and the device discovery run with descriptor 2 pointed at a temporary
file, and what they printed is passed on as DEBUG messages of this module's
logger (``bmdqct -vv`` shows them). Real errors raised by the import still
propagate as exceptions.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile

logger = logging.getLogger(__name__)

__all__ = ["import_tensorflow_quietly"]


def import_tensorflow_quietly():
    """Import TensorFlow and list its devices with C-level stderr captured; return the module.

    Idempotent: once TensorFlow is imported, later calls return it at once.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")   # TensorFlow's own C++ messages below ERROR
    try:
        saved = os.dup(2)
    except OSError:                      # no usable descriptor 2 (e.g. a detached process)
        return _import_and_list_devices()
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        os.dup2(captured.fileno(), 2)
        try:
            tf = _import_and_list_devices()
        finally:
            try:
                sys.stderr.flush()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
        captured.seek(0)
        text = captured.read().decode("utf-8", errors="replace")
    for line in text.splitlines():
        if line.strip():
            logger.debug("tensorflow: %s", line)
    return tf


def _import_and_list_devices():
    import tensorflow as tf

    tf.config.list_physical_devices()   # CUDA start-up ("failed call to cuInit") happens here
    return tf
