"""mimic-tf core library: data, teachers, transfer set, budgeted students and the Distiller.

Nothing here imports `tuner` or `serving`; each module holds one concept (see the README).
"""

__version__ = "0.1.0"
