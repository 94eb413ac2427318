"""mimic-tf core library: data, teachers, transfer set, budgeted students and the Distiller.

Nothing here imports `tuner` or `serving`; each module holds one concept (see the README).

Importing the package turns TensorFlow's oneDNN CPU kernels on where TensorFlow would leave
them off (AVX2-only x86 CPUs), unless `TF_ENABLE_ONEDNN_OPTS` is set or TensorFlow is already
imported: the environment variable only counts before TensorFlow loads (`mimic_tf.runtime`).
"""

from mimic_tf import runtime

runtime.default_onednn()

__version__ = "0.1.0"
