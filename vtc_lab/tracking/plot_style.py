"""One look for every figure of `vtc-lab report`: a configuration keeps one colour and one
marker, a loop one line style (memory loops first); legends name configurations and loops only;
every figure is saved the same way (tight bounding box, 110 dpi, atomic). The plots themselves
are `vtc_lab.tracking.plots`."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from vtc_lab import atomic
from vtc_lab.tracking.aggregate import config_keys, loop_order
from vtc_lab.tracking.report import RunRecord

EVAL_KEY = re.compile(r"^eval/([^/]+)/([^/]+)/(.+)$")
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#7f7f7f", "#bcbd22")
"""Colours by configuration, in sorted-key order (tab10, reordered: the first two contrast)."""
CONFIG_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LOOP_STYLES = ("-", "--", ":", "-.")
"""Line styles by loop, memory loops first and `none` last (`memory` solid, `none` dashed)."""

Drawn = Union[str, Any]
"""A plot function's result: a matplotlib Figure, or why it was not drawn."""


@dataclass(frozen=True)
class Look:
    """Who is drawn how, the same in every figure of one report."""

    config_of: dict[str, str]
    """run id -> configuration key."""
    colors: dict[str, str]
    markers: dict[str, str]
    loop_styles: dict[str, str]

    def color(self, run: RunRecord) -> str:
        return self.colors[self.config_of[run.run_id]]


def look(runs: list[RunRecord]) -> Look:
    cfg = config_keys(runs)
    configs = sorted(set(cfg.values()))
    loops = sorted({m.group(2) for r in runs for k in r.metrics for m in [EVAL_KEY.match(k)] if m},
                   key=loop_order)
    return Look(cfg, {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(configs)},
                {c: CONFIG_MARKERS[i % len(CONFIG_MARKERS)] for i, c in enumerate(configs)},
                {lp: LOOP_STYLES[i % len(LOOP_STYLES)] for i, lp in enumerate(loops)})


def legend(ax, lk: Look, configs: list[str], loops: list[str] = (), extra=(), **kw) -> None:
    """One legend: a coloured entry per configuration, a grey line-style entry per loop."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=lk.colors[c], marker=lk.markers[c], ls="-", label=c)
               for c in sorted(configs)]
    handles += [Line2D([], [], color="0.35", ls=lk.loop_styles[lp], label=f"loop: {lp}")
                for lp in sorted(loops, key=loop_order)]
    handles += list(extra)
    kw.setdefault("fontsize", 8)
    ax.legend(handles=handles, **kw)


def ladder(i: int) -> dict[str, float]:
    """Line width and marker size of the i-th series drawn: each later one thinner and on top,
    so curves that coincide still show both (a thin line inside a thick one)."""
    return {"lw": max(0.9, 3.4 - 0.7 * i), "ms": max(3.5, 9.0 - 1.5 * i), "zorder": 2 + i}


def filled(lk: Look, loop: str) -> bool:
    """In scatter plots a loop is told by its marker fill: the first loop filled, others hollow."""
    return lk.loop_styles.get(loop) == LOOP_STYLES[0]


def loop_fill_handles(lk: Look, loops: list[str]) -> list[Any]:
    from matplotlib.lines import Line2D

    return [Line2D([], [], color="0.35", marker="o", ls="none",
                   mfc="0.35" if filled(lk, lp) else "none", label=f"loop: {lp}")
            for lp in sorted(loops, key=loop_order)]


def eval_values(runs: list[RunRecord], metric: str) -> dict[tuple[str, str, str], float]:
    """(run id, benchmark, loop) -> value of `eval/<b>/<loop>/<metric>`."""
    out = {}
    for r in runs:
        for key, value in r.metrics.items():
            m = EVAL_KEY.match(key)
            if m and m.group(3) == metric:
                out[(r.run_id, m.group(1), m.group(2))] = value
    return out


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure(*args, **kw):
    return pyplot().subplots(*args, layout="constrained", **kw)


def save(fig, path: Path) -> None:
    """Every report plot ends the same way: 110 dpi PNG cut to its tight bounding box (no
    clipped label or outside legend), written atomically, figure freed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    atomic.write_bytes(path, buf.getvalue())
