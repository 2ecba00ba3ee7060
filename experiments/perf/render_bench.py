"""Renderer throughput vs the reference reportlab -> PDF -> poppler -> PNG pipeline, same run.

    python experiments/perf/render_bench.py            # full: ~2-3 min on 2 shared cores
    python experiments/perf/render_bench.py --quick    # smaller samples, ~40 s

Measures, single process, same settings (VTC-R1 reference renderer), ours and the reference
timed in alternating blocks on the same sample of texts:
- MATH500 solutions and ~16k-character texts: texts/s and pages/s to in-memory images and to
  PNG files, for vtc_lab.render and for the reference pipeline (on a sample, it is slow);
- the speed-up = our texts/s / the reference's texts/s (a ratio measured side by side, which is
  what counts on a shared machine);
- resident memory over 10,000 renders (it must stay flat: no cache grows per text).
Prints one table; record it in experiments/perf/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from render_reference import reference_render  # noqa: E402

from vtc_lab.render import RenderConfig, png_bytes, render_text  # noqa: E402


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _texts() -> tuple[list[str], list[str]]:
    with (REPO / "vtc_lab/eval/benchmarks_data/math500.jsonl").open() as fh:
        sols = [json.loads(line)["solution"] for line in fh]
    long, buf = [], ""
    for s in sols:  # ~16k-character texts made of consecutive solutions
        buf += s + "\n\n"
        if len(buf) >= 16_000:
            long.append(buf[:16_000])
            buf = ""
    return sols, long


def _time(fn, texts: list[str]) -> tuple[float, int]:
    pages = 0
    t0 = time.perf_counter()
    for t in texts:
        pages += fn(t)
    return time.perf_counter() - t0, pages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller samples")
    ap.add_argument("--engine", default="pdftoppm", help="reference rasteriser: pdftoppm | pdfium")
    args = ap.parse_args()
    sols, long = _texts()
    ref_n_short, ref_n_long = (20, 4) if args.quick else (60, 12)
    mem_renders = 2_000 if args.quick else 10_000
    cfg = RenderConfig()
    tmp = Path(tempfile.mkdtemp(prefix="render-bench-"))

    def ours_mem(t: str) -> int:
        return len(render_text(t, cfg))

    def ours_png(t: str) -> int:  # what `vtc-lab render save_images=true` writes
        pages = render_text(t, cfg)
        for i, im in enumerate(pages):
            (tmp / f"p{i}.png").write_bytes(png_bytes(im, cfg))
        return len(pages)

    def ref_mem(t: str) -> int:
        return len(reference_render(t, engine=args.engine))

    def ref_png(t: str) -> int:  # the reference saves its cropped pages with PIL defaults
        pages = reference_render(t, engine=args.engine)
        for i, im in enumerate(pages):
            im.save(tmp / f"r{i}.png")
        return len(pages)

    cold_t0 = time.perf_counter()
    render_text(sols[0], cfg)
    cold = time.perf_counter() - cold_t0
    for t in sols + long[:3]:  # warm the glyph atlas (one-off per font/size)
        render_text(t, cfg)

    rows = []
    rounds = 2 if args.quick else 3
    for corpus, texts, ref_n in (("MATH500", sols, ref_n_short), ("16k-char", long, ref_n_long)):
        sample = texts[:: max(1, len(texts) // ref_n)][:ref_n]  # spread over the corpus
        for target, ours, ref in (("memory", ours_mem, ref_mem), ("PNG file", ours_png, ref_png)):
            o_s, o_p = _time(ours, texts)  # ours on the whole corpus
            # Same sample, alternating blocks (ours, reference, ours, ...): each side is timed in
            # its steady state and the rounds share the machine's load; the median ratio counts.
            reps = max(1, 200 // len(sample))
            o_ms, r_ms, ratios = [], [], []
            r_p = r_s = 0.0
            for _ in range(rounds):
                os_s, _ = _time(ours, sample * reps)
                rs_s, pages = _time(ref, sample)
                r_s, r_p = r_s + rs_s, r_p + pages
                o_ms.append(1000 * os_s / (len(sample) * reps))
                r_ms.append(1000 * rs_s / len(sample))
                ratios.append(r_ms[-1] / o_ms[-1])
            med = statistics.median
            rows.append((corpus, target, len(texts), len(texts) / o_s, o_p / o_s,
                         1000 * o_s / len(texts), len(sample), med(o_ms), rounds * len(sample) / r_s,
                         r_p / r_s, med(r_ms), med(ratios)))

    rss = [(0, _rss_mb())]
    n = 0
    while n < mem_renders:
        for t in sols:
            render_text(t, cfg)
            n += 1
            if n % (mem_renders // 5) == 0:
                rss.append((n, _rss_mb()))
            if n >= mem_renders:
                break

    print(f"renderer benchmark (single process, reference settings, reference = reportlab -> PDF "
          f"-> {args.engine} -> PNG); first render incl. font load {1000 * cold:.0f} ms\n")
    print(f"{'corpus':<10}{'to':<10}{'n':>5}{'texts/s':>10}{'pages/s':>10}{'ms/text':>9}"
          f" |{'sample':>7}{'ours ms':>9}{'ref t/s':>9}{'ref p/s':>9}{'ref ms':>9}{'speed-up':>10}")
    for r in rows:
        print(f"{r[0]:<10}{r[1]:<10}{r[2]:>5}{r[3]:>10.1f}{r[4]:>10.1f}{r[5]:>9.2f}"
              f" |{r[6]:>7}{r[7]:>9.2f}{r[8]:>9.2f}{r[9]:>9.2f}{r[10]:>9.0f}{r[11]:>9.0f}x")
    print(f"(speed-up = median over {rounds} rounds of reference ms/text / ours ms/text, both timed "
          "on the same sample in alternating blocks)")
    print(f"\nresident memory over {mem_renders} renders (MB): "
          + ", ".join(f"{k}: {v:.0f}" for k, v in rss)
          + f"  (growth after the first fifth: {rss[-1][1] - rss[1][1]:+.1f} MB)")


if __name__ == "__main__":
    main()
