"""The latency cost model (vtc_lab.infer.costmodel) against measurements, and at paper scale.

    python experiments/perf/cost_model.py validate vtc-runs/perf/loop_latency.json
    python experiments/perf/cost_model.py paper
    python experiments/perf/cost_model.py fit
    python experiments/perf/cost_model.py sensitivity

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

`fit` fits the serving terms (fixed step cost, per-sequence cost, weight and K/V bandwidth
efficiencies) on the `fit` points of serving_decode_public.json (public vLLM figures, cited there)
and prints every point's error, the held-out ones separately. `sensitivity` prints the predicted
serving speedup (text / optical GPU time per problem = the throughput ratio) of Qwen3-VL-8B and
GLM-4.1V-9B as the fixed step cost, the concurrency cap, the reasoning length and the compression
vary, and the region of (compression, rounds) where 2.7x is reached.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import replace

from vtc_lab.infer.costfit import check, fit_serving, load_points
from vtc_lab.infer.costmodel import (
    GLM_41V_9B, H100, HF_COMPILED_STEP_S, QWEN3_VL_8B, SERVING_FIT, Hardware, ModelShape,
    Workload, decode_s, optical_loop, serving, serving_hardware, speedup, text_loop, throughput)

PUBLIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "serving_decode_public.json")
# The renderer's measured compression (Qwen BPE text tokens per vision token) and pages per
# 8,192-token MATH500 round (`paper` measures them; README "Cost model"): the sensitivity
# table's defaults.
MEASURED = {"Qwen3-VL-8B": (QWEN3_VL_8B, 3.82, 5.1), "GLM-4.1V-9B": (GLM_41V_9B, 2.84, 5.1)}


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


def fit(path: str) -> None:
    model, points = load_points(path)
    terms = fit_serving(model, points)
    print(f"# fit on {sum(p.split == 'fit' for p in points)} points of {path}: weight bandwidth "
          f"efficiency {terms['weight_efficiency']:.3f}, K/V efficiency {terms['kv_efficiency']:.3f}, "
          f"step {terms['step_overhead_s'] * 1e3:.3f} ms + {terms['seq_overhead_s'] * 1e3:.3f} ms "
          f"per sequence (costshapes.SERVING_FIT: {SERVING_FIT})")
    print("| point | split | GPU | batch | context | measured (ms) | predicted (ms) | error |")
    print("|---|---|---|---|---|---|---|---|")
    rows = check(model, points, terms)
    for r in rows:
        print(f"| {r['id']} | {r['split']} | {r['gpu']} | {r['batch']} | {r['context']:.0f} | "
              f"{r['measured_s'] * 1e3:.2f} | {r['predicted_s'] * 1e3:.2f} | "
              f"{100 * r['error']:+.1f} % |")
    held = [abs(r["error"]) for r in rows if r["split"] == "heldout"]
    print(f"held-out: mean abs error {100 * statistics.mean(held):.1f} %, max "
          f"{100 * max(held):.1f} % over {len(held)} points")


def _speedup(model, hw, ratio, pages, rounds, max_seqs=256) -> float:
    w = Workload(total=rounds * 8192, round_tokens=8192, compression=ratio, pages_per_round=pages)
    return speedup(model, hw, w, "serving", max_seqs=max_seqs)


def sensitivity(gpu: str) -> None:
    hw = serving_hardware(gpu)
    names = list(MEASURED)
    head = " | ".join(names)
    print(f"# {hw.name}: fitted serving terms {SERVING_FIT}; 8 x 8,192 tokens, 512 problems, "
          f"reuse on, default compression {', '.join(f'{n} {c}' for n, (_, c, _) in MEASURED.items())}")
    print(f"\n| fixed step cost (ms) | {head} |\n|---|---|---|")
    for step in (0.0, hw.step_overhead_s, 2e-3, HF_COMPILED_STEP_S, 20e-3):
        h = replace(hw, step_overhead_s=step)
        print(f"| {step * 1e3:.2f} | " + " | ".join(
            f"{_speedup(m, h, c, p, 8):.2f}" for m, c, p in MEASURED.values()) + " |")
    print(f"\n| K/V bandwidth efficiency | {head} |\n|---|---|---|")
    for eff in (hw.kv_efficiency, 0.7, 1.0):
        h = replace(hw, kv_efficiency=eff)
        print(f"| {eff:.3f} | " + " | ".join(
            f"{_speedup(m, h, c, p, 8):.2f}" for m, c, p in MEASURED.values()) + " |")
    print(f"\n| concurrency cap (max_num_seqs) | {head} |\n|---|---|---|")
    for cap in (1, 8, 16, 32, 64, 256, 1024):
        print(f"| {cap} | " + " | ".join(
            f"{_speedup(m, hw, c, p, 8, cap):.2f}" for m, c, p in MEASURED.values()) + " |")
    print(f"\n| rounds x 8,192 | {head} |\n|---|---|---|")
    for rounds in (1, 2, 4, 8, 16):
        print(f"| {rounds} | " + " | ".join(
            f"{_speedup(m, hw, c, p, rounds):.2f}" for m, c, p in MEASURED.values()) + " |")
    print(f"\n| compression | {head} |\n|---|---|---|")
    for ratio in (1.5, 2.0, 2.84, 3.82, 5.0, 8.0):
        print(f"| {ratio} | " + " | ".join(
            f"{_speedup(m, hw, ratio, p, 8):.2f}" for m, _, p in MEASURED.values()) + " |")
    ratios = (2.0, 2.84, 3.82, 5.0, 8.0)
    for name, (model, _, pages) in MEASURED.items():
        print(f"\n{name}: speedup by rounds (rows) and compression (columns); **bold** = 2.7x reached")
        print("| rounds | " + " | ".join(map(str, ratios)) + " |\n" + "|---" * (len(ratios) + 1) + "|")
        for rounds in (2, 4, 8, 16):
            cells = []
            for ratio in ratios:
                v = _speedup(model, hw, ratio, pages, rounds)
                cells.append(f"**{v:.2f}**" if v >= 2.7 else f"{v:.2f}")
            print(f"| {rounds} | " + " | ".join(cells) + " |")
    w = Workload(total=8 * 8192, round_tokens=8192, compression=3.82, pages_per_round=5.1)
    t, o = (throughput(QWEN3_VL_8B, hw, w, mode) for mode in ("text", "optical"))
    print(f"\nthroughput, Qwen3-VL-8B, 8 x 8,192: text {t['requests_per_s'] * 3600:.0f} / optical "
          f"{o['requests_per_s'] * 3600:.0f} requests per hour (concurrency {t['concurrency']} / "
          f"{o['concurrency']}, decode step {t['step_s'] * 1e3:.1f} / {o['step_s'] * 1e3:.1f} ms)")


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
    f = sub.add_parser("fit", help="fit the serving terms on public decode figures")
    f.add_argument("json", nargs="?", default=PUBLIC)
    s = sub.add_parser("sensitivity", help="predicted serving speedup as the inputs vary")
    s.add_argument("--gpu", default="H100", help="H100 | H200 | H800 | A100-40GB")
    args = parser.parse_args()
    if args.cmd == "fit":
        fit(args.json)
    elif args.cmd == "sensitivity":
        sensitivity(args.gpu)
    elif args.cmd == "validate":
        validate(args.json, args.threads)
    else:
        paper(None if args.preprocess_ms is None else args.preprocess_ms / 1e3,
              None if args.render_ms is None else args.render_ms / 1e3)


if __name__ == "__main__":
    main()
