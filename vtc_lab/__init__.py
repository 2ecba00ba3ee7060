"""vtc-lab: an experiment platform for vision-text compression (VTC) reasoning.

Stages live in sub-packages (render, segment, data, models, train, infer, eval, tracking, cli);
see docs/architecture.md for the data flow and the contracts between them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vtc-lab")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
