"""Image preprocessing per page, every registered backbone side by side on the same pages.

The pages are rendered once (MATH500 solutions, `--per-text` of them joined per text, the
reference renderer), capped at `--max-pixels` as training and the loops cap them, and then
every registered backbone's image processor turns each page into patches, round after round,
the backbones interleaved in each round (a change in machine load hits all of them alike).
Each processor is the class and settings its tiny recipe builds locally
(`vtc_lab/models/archs/*.py`: `TinyRecipe.image_processor` and its kwargs) with the released
checkpoint's patch size, merge size, temporal patch size and pixel bounds (the family's
`VisionSpec`), so the page costs what it costs the real model; nothing is downloaded.

Time is CPU time of this process (`time.process_time`), which a busy shared machine inflates
far less than wall time; each backbone's figure is the median over the rounds of ms per page,
with the fastest and slowest round. `--profile` adds a profile per backbone with a CPU-time
timer (cProfile's default wall clock charges other processes' time to whatever function
happened to be running).

    python experiments/perf/preprocess_backbones.py                    # ~1 min on 2 shared cores
    python experiments/perf/preprocess_backbones.py --texts 4 --rounds 2 --tracking off  # smoke

Logged to MLflow (experiment `perf-preprocess`, one run per backbone) unless `--tracking off`.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def render_pages(texts: int, per_text: int, max_pixels: int | None) -> list:
    from vtc_lab.models.images import cap_pixels
    from vtc_lab.render import RenderConfig, render_text

    with (ROOT / "vtc_lab/eval/benchmarks_data/math500.jsonl").open() as fh:
        solutions = [json.loads(line)["solution"] for line in fh]
    config = RenderConfig()
    pages = []
    for i in range(texts):
        text = "\n\n".join(solutions[i * per_text:(i + 1) * per_text])
        pages += [cap_pixels(page, max_pixels) for page in render_text(text, config)]
    return pages


def image_processors() -> dict:
    """{backbone: image processor} for every registered family with a tiny recipe."""
    import transformers

    from vtc_lab.models.registry import backbone_names, get_backbone

    found = {}
    for name in backbone_names():
        spec = get_backbone(name)
        if spec.tiny is None:
            continue
        v = spec.vision
        cls = getattr(transformers, spec.tiny.image_processor)
        found[name] = cls(patch_size=v.patch_size, merge_size=v.merge_size,
                          temporal_patch_size=v.temporal_patch_size,
                          size={"shortest_edge": v.min_pixels, "longest_edge": v.max_pixels},
                          **spec.tiny.image_processor_kwargs)
    return found


def one_pass(processor, pages: list) -> tuple[float, int]:
    """CPU seconds for every page through `processor`, one page per call (as the loops and the
    collator call it), and the vision tokens produced (patches / merge^2)."""
    tokens = 0
    start = time.process_time()
    for page in pages:
        out = processor(images=[page], return_tensors="np")
        tokens += int(out["image_grid_thw"].prod(axis=1).sum()) // processor.merge_size ** 2
    return time.process_time() - start, tokens


def profile(processor, pages: list, top: int) -> str:
    prof = cProfile.Profile(time.process_time)
    prof.enable()
    one_pass(processor, pages)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def log_runs(args, rows: list[dict]) -> None:
    from vtc_lab.tracking import TrackingConfig, start_run

    tracking = TrackingConfig(mode=args.tracking, experiment="perf-preprocess", log_config=False)
    for row in rows:
        with start_run(tracking, None, args.output_root, run_name=row["backbone"]) as run:
            run.log_params({"bench.backbone": row["backbone"], "bench.processor": row["processor"],
                            "bench.pages": row["pages"], "bench.rounds": args.rounds,
                            "bench.max_pixels": args.max_pixels, "bench.load": row["load"]})
            run.log_metrics({f"perf/{k}": row[k] for k in
                             ("ms_per_page", "ms_per_page_min", "ms_per_page_max",
                              "vision_tokens_per_page", "us_per_vision_token", "relative")})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=12, help="texts rendered (pages follow)")
    parser.add_argument("--per-text", type=int, default=6, help="MATH500 solutions per text")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-pixels", type=int, default=262_144,
                        help="page cap (model.image_max_pixels; the paper's is 262,144; 0: none)")
    parser.add_argument("--reference", default="qwen3_vl", help="the backbone ratios refer to")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="print the N functions with the most CPU time per backbone")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--tracking", default="local", choices=["local", "off"])
    parser.add_argument("--output-root", default="vtc-runs")
    args = parser.parse_args()

    pages = render_pages(args.texts, args.per_text, args.max_pixels)
    processors = image_processors()
    for processor in processors.values():  # warm-up: first-call imports and allocations
        one_pass(processor, pages[:2])
    seconds = {name: [] for name in processors}
    tokens = {}
    for r in range(args.rounds):
        names = list(processors)
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotate who goes first
            spent, tokens[name] = one_pass(processors[name], pages)
            seconds[name].append(spent)
    load = os.getloadavg()[0]
    rows = []
    for name, processor in processors.items():
        per_page = sorted(1000 * s / len(pages) for s in seconds[name])
        rows.append({"backbone": name, "processor": type(processor).__name__,
                     "patch_size": processor.patch_size, "pages": len(pages),
                     "ms_per_page": statistics.median(per_page), "ms_per_page_min": per_page[0],
                     "ms_per_page_max": per_page[-1],
                     "vision_tokens_per_page": tokens[name] / len(pages), "load": round(load, 1)})
        rows[-1]["us_per_vision_token"] = 1000 * rows[-1]["ms_per_page"] / rows[-1]["vision_tokens_per_page"]
    ref = next((row for row in rows if row["backbone"] == args.reference), rows[0])
    for row in rows:
        row["relative"] = row["ms_per_page"] / ref["ms_per_page"]

    sizes = sorted({page.size for page in pages}, key=lambda s: -s[0] * s[1])
    cap = f"capped at {args.max_pixels:,} pixels" if args.max_pixels else "uncapped"
    print(f"{len(pages)} pages ({args.texts} texts x {args.per_text} MATH500 solutions, {cap}; "
          f"largest {sizes[0][0]}x{sizes[0][1]}), {args.rounds} rounds, "
          f"CPU time per page, median [min, max] over rounds; load average {load:.1f}")
    print(f"| backbone | image processor | patch | vision tokens/page | ms/page | "
          f"µs/vision token | vs {ref['backbone']} |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['backbone']} | {row['processor']} | {row['patch_size']} | "
              f"{row['vision_tokens_per_page']:.1f} | {row['ms_per_page']:.2f} "
              f"[{row['ms_per_page_min']:.2f}, {row['ms_per_page_max']:.2f}] | "
              f"{row['us_per_vision_token']:.1f} | x{row['relative']:.2f} |")
    if args.profile:
        for name, processor in processors.items():
            print(f"\n== {name}: {type(processor).__name__}, CPU-time profile of one pass")
            print(profile(processor, pages, args.profile))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "rows": rows, "at": time.time()}, indent=2))
    if args.tracking != "off":
        log_runs(args, rows)


if __name__ == "__main__":
    main()
