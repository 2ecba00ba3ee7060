"""What the page-buffer pool (vtc_lab/render/pagemem.py) buys: render time with it vs without.

    OMP_NUM_THREADS=1 python experiments/perf/pagemem_bench.py

Renders the MATH500 fixture solutions and eight ~16k-character texts (the fixture solutions
concatenated) with the default renderer config, in alternating blocks in one process, once
with the pool (pages drawn into reused buffers that Pillow maps) and once with plain
Pillow-allocated pages (`pagemem.AVAILABLE = False`, the fallback). Prints the median
milliseconds per text of six blocks each and the ratio.
"""

from __future__ import annotations

import statistics
import time

from vtc_lab.data.sources import math500_fixture_rows
from vtc_lab.render import RenderConfig, pagemem, render_text


def _block(texts: list[str], cfg: RenderConfig, pooled: bool) -> float:
    pagemem.AVAILABLE = pooled
    start = time.perf_counter()
    for text in texts:
        render_text(text, cfg)
    return (time.perf_counter() - start) / len(texts) * 1000


def main() -> None:
    if not pagemem.AVAILABLE:
        raise SystemExit("this Pillow cannot map RGB buffers: the pool is off, nothing to compare")
    solutions = [r["solution"] for r in math500_fixture_rows() if r.get("solution")]
    joined = " ".join(solutions) * 3
    long_texts = [joined[i * 16000:(i + 1) * 16000] for i in range(8)]
    cfg = RenderConfig()
    for name, texts in (("16k-character texts", long_texts), ("MATH500 fixture solutions", solutions)):
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(6):
            for pooled in (True, False):
                times[pooled].append(_block(texts, cfg, pooled))
        pool, plain = statistics.median(times[True]), statistics.median(times[False])
        print(f"{name}: pool {pool:.2f} ms/text, plain Pillow {plain:.2f} ms/text, "
              f"plain/pool {plain / pool:.2f}x")
    pagemem.AVAILABLE = True


if __name__ == "__main__":
    main()
