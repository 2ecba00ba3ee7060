"""Where the Hydra apps find `conf/`, in a source checkout and in a non-editable install alike.

`conf/` sits at the top of the repository and is installed as the package `vtc_lab.conf`
(pyproject maps the one onto the other), so importlib.resources finds it either way.
"""

from __future__ import annotations

from importlib.resources import files

CONF_DIR: str = str(files("vtc_lab.conf"))
