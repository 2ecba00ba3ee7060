"""The latency cost model (vtc_lab.infer.costmodel) against measurements, and at paper scale.

    python experiments/perf/cost_model.py validate vtc-runs/perf/loop_latency.json
    python experiments/perf/cost_model.py paper

`validate` reads `loop_latency.py`'s JSON. Calibration (stated, never fitted to the optical
loop): achieved FLOP/s and memory bandwidth from two micro-benchmarks run here (one thread, like
the benchmark), the eager engine's fixed per-forward overhead from the text loop at the
smallest T of each model, render and preprocessing seconds per page from the optical runs
(inputs of the model, not predictions). Everything else is predicted: the text loop at the other
T, every optical run (reuse on and off) and the speedup; the error is |predicted - measured| /
measured.

`paper` measures the default renderer's compression on MATH500 reference solutions cut into
8,192-token rounds (Qwen BPE text tokens / each backbone's vision tokens, placeholders only) and
predicts both loops for Qwen3-VL-8B and GLM-4.1V-9B on one H100 for 1-8 rounds of 8,192 tokens:
eager engine (batch 1) and a serving engine (512 problems, concurrency bounded by the KV cache),
with and without cross-round reuse.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import replace

from vtc_lab.infer.costmodel import (
    GLM_41V_9B, H100, QWEN3_VL_8B, Hardware, ModelShape, Workload, decode_s, optical_loop,
    serving, text_loop)


def microbench(threads: int) -> tuple[float, float]:
    """(matmul FLOP/s, copy bandwidth bytes/s) on this CPU, best of 5."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(256, 512), torch.randn(512, 1536)
    x, y = torch.empty(64 << 20 >> 2), torch.empty(64 << 20 >> 2)
    flops, bw = [], []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(20):
            a @ b
        flops.append(20 * 2 * 256 * 512 * 1536 / (time.perf_counter() - t))
        t = time.perf_counter()
        for _ in range(5):
            y.copy_(x)
        bw.append(5 * 2 * x.nbytes / (time.perf_counter() - t))
    return max(flops), max(bw)


def shape_of(dims: dict) -> ModelShape:
    return ModelShape(layers=dims["layers"], hidden=dims["hidden"], heads=dims["heads"],
                      kv_heads=dims["kv_heads"], head_dim=dims["head_dim"],
                      intermediate=dims["intermediate"], vocab=dims["vocab"],
                      vision_layers=dims["vision_layers"], vision_hidden=dims["vision_hidden"],
                      vision_intermediate=dims["vision_intermediate"],
                      patches_per_token=dims["patches_per_token"],
                      bytes_per_param=dims["bytes_per_param"])


def workload(point: dict) -> Workload:
    """The measured run's workload: prompt size, compression, pages per round, per-page costs."""
    o, rounds = point["optical"], point["total"] // point["round"]
    prompts = rounds * (rounds - 1) / 2  # sum over rounds of the earlier rounds
    pages = o["images"] / prompts if prompts else 1.0
    return Workload(total=point["total"], round_tokens=point["round"],
                    question_tokens=point["text"]["prompt_tokens"], compression=o["compression"] or 1.0,
                    pages_per_round=pages,
                    render_s_per_page=o["render_s"] / max(1.0, pages * (rounds - 1)),
                    preprocess_s_per_page=o["preprocess_s"] / max(1, o["images"]))


def validate(path: str, threads: int) -> None:
    data = json.loads(open(path).read())
    flops, bw = microbench(threads)
    print(f"# micro-benchmarks ({threads} thread): {flops / 1e9:.1f} GFLOP/s matmul, "
          f"{bw / 1e9:.1f} GB/s copy; load average {os.getloadavg()[0]:.1f}")
    errors: dict[str, list[float]] = {"text": [], "optical": [], "speedup": []}
    print("| model | T | S | reuse | text meas / pred (s) | optical meas / pred (s) | "
          "speedup meas / pred |")
    print("|---|---|---|---|---|---|---|")
    for arch, dims in data["models"].items():
        model = shape_of(dims)
        points = [p for p in data["points"] if p["model"] == arch]
        if not points:
            continue
        calib = min(points, key=lambda p: p["total"])
        t = calib["text"]
        base = Hardware("cpu", flops, bw, memory=64e9, forward_overhead_s=0.0)
        compute = decode_s(model, base, t["generated_tokens"], t["prompt_tokens"])
        overhead = max(0.0, (t["decode_s"] - compute) / t["generated_tokens"])
        hw = replace(base, forward_overhead_s=overhead, vision_overhead_s=overhead)
        print(f"| {arch}: forward overhead {overhead * 1e3:.1f} ms (from text T={calib['total']}) "
              "| | | | | | |")
        for p in points:
            w = workload(p)
            pt = text_loop(model, hw, w).total_s
            po = optical_loop(model, hw, w, p["reuse"]).total_s
            mt, mo = p["text"]["latency_s"], p["optical"]["latency_s"]
            if p["total"] != calib["total"]:
                errors["text"].append(abs(pt - mt) / mt)
            errors["optical"].append(abs(po - mo) / mo)
            errors["speedup"].append(abs(pt / po - mt / mo) / (mt / mo))
            print(f"| {arch} | {p['total']} | {p['round']} | {'on' if p['reuse'] else 'off'} | "
                  f"{mt:.1f} / {pt:.1f} | {mo:.1f} / {po:.1f} | {mt / mo:.2f} / {pt / po:.2f} |")
    for key, errs in errors.items():
        if errs:
            print(f"{key}: mean abs error {100 * statistics.mean(errs):.1f} %, max "
                  f"{100 * max(errs):.1f} % over {len(errs)} points")


def paper_compression() -> dict[str, tuple[float, float]]:
    """backbone -> (text tokens per vision token, pages per 8,192-token round) on MATH500."""
    from vtc_lab.infer.evaluate import load_problems
    from vtc_lab.render import RenderConfig, render_text, vision_tokens
    from vtc_lab.render.text_tokens import qwen_tokenizer

    tok = qwen_tokenizer()
    text = "\n\n".join(p.meta.get("solution") or "" for p in load_problems("math500", 500, 0))
    offsets = tok.offsets(text)
    out = {}
    rounds = [text[offsets[k][0]:offsets[k + 8191][1]] for k in range(0, len(offsets) - 8191, 8192)]
    pages = [render_text(r, RenderConfig()) for r in rounds]
    for backbone in ("qwen3_vl", "glm4v"):
        vision = sum(vision_tokens(p.width, p.height, backbone) for ps in pages for p in ps)
        out[backbone] = (8192 * len(rounds) / vision, sum(map(len, pages)) / len(rounds))
    return out


def page_costs(arch: str, repeats: int = 5) -> tuple[float, float]:
    """(render s, image preprocessing s) per page of an 8,192-token MATH500 round: CPU time of
    this process (what an idle core would take; wall time on the shared box is several times
    more), best of `repeats`. The tiny backbone's image processor has the real one's patch,
    merge and pixel bounds."""
    from vtc_lab.infer.evaluate import load_problems
    from vtc_lab.models import ModelConfig, load_backbone
    from vtc_lab.render import RenderConfig, render_text

    text = "\n\n".join(p.meta.get("solution") or "" for p in load_problems("math500", 60, 0))
    text = text[:8192 * 3]  # ~8k Qwen tokens of solutions (~3 characters per token)
    processor = load_backbone(ModelConfig(name=f"tiny_{arch}", arch=arch)).processor.image_processor
    render, prep = [], []
    for _ in range(repeats):
        t = time.process_time()
        pages = render_text(text, RenderConfig())
        render.append((time.process_time() - t) / len(pages))
        t = time.process_time()
        for page in pages:
            processor([page], return_tensors="pt")
        prep.append((time.process_time() - t) / len(pages))
    return min(render), min(prep)


def paper(preprocess_s_per_page: float | None, render_s_per_page: float | None) -> None:
    costs = {}
    for arch in ("qwen3_vl", "glm4v"):
        render, prep = page_costs(arch) if None in (preprocess_s_per_page, render_s_per_page) \
            else (render_s_per_page, preprocess_s_per_page)
        costs[arch] = (render if render_s_per_page is None else render_s_per_page,
                       prep if preprocess_s_per_page is None else preprocess_s_per_page)
        print(f"# {arch} page costs (CPU time, best of 5, load average {os.getloadavg()[0]:.1f}): "
              f"render {costs[arch][0] * 1e3:.1f} ms, image preprocessing "
              f"{costs[arch][1] * 1e3:.1f} ms per page")
    comp = paper_compression()
    print(f"# one H100: {H100.flops / 1e12:.0f} TFLOP/s and {H100.bandwidth / 1e12:.2f} TB/s "
          f"achieved, eager forward overhead {H100.forward_overhead_s * 1e3:.0f} ms")
    print("| backbone | compression | rounds x 8192 | eager text / optical (s) | eager speedup "
          "(reuse / none) | serving concurrency text / optical | serving speedup (reuse / none) "
          "| render+preprocess share (serving, reuse) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, model, arch in (("Qwen3-VL-8B", QWEN3_VL_8B, "qwen3_vl"),
                              ("GLM-4.1V-9B", GLM_41V_9B, "glm4v")):
        ratio, pages = comp[arch]
        for rounds in (1, 2, 4, 8):
            w = Workload(total=rounds * 8192, round_tokens=8192, compression=ratio,
                         pages_per_round=pages, render_s_per_page=costs[arch][0],
                         preprocess_s_per_page=costs[arch][1])
            et, eo = text_loop(model, H100, w), optical_loop(model, H100, w, True)
            eo_plain = optical_loop(model, H100, w, False)
            st, so = serving(model, H100, w, "text"), serving(model, H100, w, "optical")
            so_plain = serving(model, H100, w, "optical", reuse=False)
            share = (so.render_s + so.preprocess_s) / so.total_s
            print(f"| {name} | {ratio:.2f} | {rounds} | {et.total_s:.0f} / {eo.total_s:.0f} | "
                  f"{et.total_s / eo.total_s:.2f} / {et.total_s / eo_plain.total_s:.2f} | "
                  f"{st.extra['concurrency']} / {so.extra['concurrency']} | "
                  f"{st.total_s / so.total_s:.2f} / {st.total_s / so_plain.total_s:.2f} | "
                  f"{100 * share:.1f} % |")
    print("paper (VTC-R1, vLLM, 8 x 8192): 2.7x lower end-to-end latency")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate", help="predicted vs measured (loop_latency.py's JSON)")
    v.add_argument("json")
    v.add_argument("--threads", type=int, default=1)
    p = sub.add_parser("paper", help="predict Qwen3-VL-8B / GLM-4.1V-9B on one H100")
    p.add_argument("--preprocess-ms", type=float, default=None,
                   help="image preprocessing per page (default: measured here)")
    p.add_argument("--render-ms", type=float, default=None,
                   help="rendering per page (default: measured here)")
    args = parser.parse_args()
    if args.cmd == "validate":
        validate(args.json, args.threads)
    else:
        paper(None if args.preprocess_ms is None else args.preprocess_ms / 1e3,
              None if args.render_ms is None else args.render_ms / 1e3)


if __name__ == "__main__":
    main()
