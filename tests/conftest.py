"""Suite-wide settings: offline, headless, quiet, and reproducible on a 2-core machine."""

import os

# Nothing may reach a model hub; plots never need a display; tokenizers must not fork threads
# under pytest's process; keep BLAS from oversubscribing the two cores.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "2")
