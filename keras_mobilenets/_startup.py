"""Quiet TensorFlow's start-up lines when the `keras-mobilenets` command runs (imported first by the
package, so it acts before TensorFlow loads; a plain `import keras_mobilenets` is left alone).

On a CPU machine TensorFlow prints its CUDA stub banner twice, a CPU-instructions banner and
`failed call to cuInit`, none of which the user asked for. Unless the user set TF_CPP_MIN_LOG_LEVEL
themselves, the command sets it to 2 and imports TensorFlow with its C++ stderr captured, then passes
on every line but those banners.
"""

import os
import re
import sys
import tempfile

NOISE = re.compile(r"cudart_stub\.cc|before absl::InitializeLog|cpu_feature_guard|To enable the following "
                   r"instructions|oneDNN custom operations|Unable to register cu(DNN|FFT|BLAS) factory|"
                   r"TF-TRT Warning|computation placer already registered")
NO_GPU = re.compile(r"failed call to cuInit")


def _is_cli():
    argv = getattr(sys, "orig_argv", sys.argv)
    if "-m" in argv[:-1] and argv[argv.index("-m") + 1] == "keras_mobilenets.app.cli":
        return True
    return os.path.basename(sys.argv[0]) == "keras-mobilenets"


def import_tensorflow_quietly():
    """Import TensorFlow (and find its GPUs) with the start-up banners filtered out of stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    gpus = None
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not NOISE.search(line) and not (NO_GPU.search(line) and gpus == []
                                                   and not os.path.exists("/dev/nvidiactl")):
                    sys.stderr.write(line)
            sys.stderr.flush()


if _is_cli() and "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import_tensorflow_quietly()
