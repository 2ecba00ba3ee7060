"""When rendering does not pay (issue 23 §6): the round length below which rendering a round to
pages (render + image preprocessing + vision tower + prefill of its vision tokens) costs more time
than the text tokens it saves, measured with the loop's own timers on the tiny models, and
predicted by the cost model (vtc_lab.infer.costmodel) for Qwen3-VL-8B and GLM-4.1V-9B on an H100.

1. Sweep. Per round length S: the text loop and the optical loop, each `--rounds` rounds of
   exactly S tokens (forced: the next S ids of MATH500 reference solutions, never the end of the
   turn; the forcing engine of experiments/perf/loop_latency.py), batch 1, greedy, the engine's
   cross-round reuse on (as `vtc-lab eval` runs). Time split from the loop's own timers: render
   (round records), preprocess, vision, prefill, decode (`HFEngine.stats`). Repeated `--repeats`
   times, text and optical side by side in each repeat. Delta = optical - text latency; the
   crossover is where the mean delta changes sign (linear in S between the two sweep points),
   printed with the S at which the delta's 95 % interval excludes 0 (on a loaded machine decode
   noise can hide it). Also: the same for the memory work alone (every timer but decode), and
   the token crossover (where a round's pages cost fewer prompt tokens than its text).
2. Prediction. The cost model (vtc_lab.infer.costmodel) for the two 8-9B models on an H100 over
   a fine grid of S, reuse on, eager (`text_loop` / `optical_loop`) and serving (`serving`, 512
   problems) regimes, with this machine's measured render and preprocessing time per page, and
   the reference renderer's compression and pages per token (docs/cost-model.md).
3. Both ways. A mixed workload (rounds alternating `--mixed` lengths, each ended by the
   end-of-turn token) through the optical loop with `loop.min_render_tokens` 0 (every round
   rendered) and = the threshold (`--threshold`, default: the measured crossover rounded up: end
   to end, else memory work, else tokens),
   side by side in each repeat; mean and 95 % t-interval over repeats and of the paired
   difference.

    python experiments/perf/render_crossover.py --quick
    python experiments/perf/render_crossover.py --lengths 8,16,32,64,128,256,512 --repeats 3
    python experiments/perf/render_crossover.py --predict-only 0.0071,0.0357   # cost model only

Results: printed, a JSON file (`--json`) and, unless `--tracking off`, MLflow (experiment
`perf-render-crossover` in `<--output-root>/mlflow.db`: one run per S with each repeat as a
step, one run of the cost model's curves), which `vtc-lab report
tracking.experiment=perf-render-crossover` draws as `render_crossover.png`. Wall times on a shared CPU depend on the load
(printed at start and end): compare only numbers of one run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path

from vtc_lab.tracking.crossover_plot import crossover  # one home: the report marks the same S*

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REFERENCE_COMPRESSION = 3.8
"""Text tokens per vision token of the reference renderer on MATH500 (Qwen3-VL; docs/cost-model.md)."""
REFERENCE_PAGES_PER_8K = 5.1
"""Pages per 8,192-token round of the reference renderer (docs/cost-model.md)."""


def _loop_latency():
    """experiments/perf/loop_latency.py as a module (its forcing engine, one home)."""
    path = Path(__file__).with_name("loop_latency.py")
    spec = importlib.util.spec_from_file_location("loop_latency", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("loop_latency", module)
    spec.loader.exec_module(module)
    return module


def mixed_engine_class(base):
    """The forcing engine, but round k emits the next `lengths[k % len]` stream ids and then the
    end-of-turn token (rounds of chosen, unequal lengths)."""
    import torch

    class Force:
        def __init__(self, targets: list[int]):
            self.targets, self.width = targets, None

        def __call__(self, input_ids, scores):
            if self.width is None:
                self.width = input_ids.shape[1]
            t = min(input_ids.shape[1] - self.width, len(self.targets) - 1)
            out = torch.full_like(scores, float("-inf"))
            out[:, self.targets[t]] = 0.0
            return out

    class MixedEngine(base):
        def __init__(self, backbone, stream, lengths, **kwargs):
            super().__init__(backbone, stream, **kwargs)
            self.lengths, self.call = lengths, 0

        def logits_processors(self, requests, params, device):
            n = self.lengths[self.call % len(self.lengths)]
            self.call += 1
            targets = self.stream[self.pos:self.pos + n] + [self.stop_ids[0]]
            self.pos += n
            return [Force(targets)]

    return MixedEngine


def run_once(engine, mode: str, rounds: int, budget: int, min_render: int = 0) -> dict:
    """One problem through `run_loop`; the latency and its split from the loop's timers."""
    from vtc_lab.eval.benchmarks import Problem
    from vtc_lab.infer.config import LoopConfig
    from vtc_lab.infer.engine import EngineStats
    from vtc_lab.infer.loop import LoopStats, run_loop
    from vtc_lab.render import RenderConfig

    engine.stats = EngineStats()
    engine.clear_cache()
    engine.pos = 0
    if hasattr(engine, "call"):
        engine.call = 0
    cfg = LoopConfig(mode=mode, max_rounds=rounds, max_new_tokens=budget, do_sample=False,
                     batch_size=1, min_render_tokens=min_render)
    problem = Problem(id="p", question="Solve the problem; reason step by step.", gold="0",
                      benchmark="math500")
    stats = LoopStats()
    [rec] = run_loop(engine, [problem], cfg, RenderConfig(), None, progress=False, stats=stats)
    s = engine.stats
    pages = sum(r.new_images for r in rec.rounds)
    return dict(latency_s=stats.wall_s, render_s=sum(r.render_s for r in rec.rounds),
                preprocess_s=s.preprocess_s, vision_s=s.vision_s, prefill_s=s.prefill_s,
                decode_s=s.decode_s, rounds=len(rec.rounds), pages=pages,
                generated=sum(r.generated_tokens for r in rec.rounds),
                text_rounds=sum(r.memory_kind == "text" for r in rec.rounds),
                memory_text_tokens=sum(r.memory_text_tokens for r in rec.rounds if r.new_images),
                memory_vision_tokens=sum(r.memory_vision_tokens for r in rec.rounds))


def memory_work(run: dict) -> float:
    """Seconds of a loop that are not decode: render, preprocess, vision tower, prefill."""
    return run["render_s"] + run["preprocess_s"] + run["vision_s"] + run["prefill_s"]


def _excludes_zero(xs: list[float]) -> bool:
    from vtc_lab.eval.stats import mean_ci

    iv = mean_ci(xs)
    return iv.has_interval and (iv.low > 0 or iv.high < 0)


def predicted(render_s_per_page: float, preprocess_s_per_page: float, rounds: int,
              problems: int = 512, curves: dict | None = None) -> dict:
    """Cost-model crossover for the two 8-9B models on one H100, reuse on, in the eager regime
    (one sequence through HF `generate`) and the serving regime (`problems` sequences through a
    vLLM-like engine, concurrency bounded by the KV cache; `costmodel.serving`). `curves`, when
    given, receives every grid point: {(model, regime): [(S, optical - text seconds)]}."""
    from vtc_lab.infer.costmodel import (GLM_41V_9B, H100, QWEN3_VL_8B, Workload, optical_loop,
                                         serving, text_loop)

    grid = sorted({int(round(2 ** (k / 8))) for k in range(24, 8 * 14 + 1)})  # 8 .. 16384
    out = {}
    for name, model in (("Qwen3-VL-8B", QWEN3_VL_8B), ("GLM-4.1V-9B", GLM_41V_9B)):
        eager, served = [], []
        for s in grid:
            w = Workload(total=rounds * s, round_tokens=s, compression=REFERENCE_COMPRESSION,
                         pages_per_round=max(1.0, REFERENCE_PAGES_PER_8K * s / 8192),
                         render_s_per_page=render_s_per_page,
                         preprocess_s_per_page=preprocess_s_per_page)
            eager.append((s, optical_loop(model, H100, w, True).total_s
                          - text_loop(model, H100, w).total_s))
            served.append((s, serving(model, H100, w, "optical", problems).total_s
                           - serving(model, H100, w, "text", problems).total_s))
        if curves is not None:
            curves[(name, "eager")], curves[(name, "serving")] = eager, served
        out[name] = {regime: dict(crossover=crossover(d),
                                  delta_at={s: x for s, x in d
                                            if s in (64, 256, 1024, 4096, 8192)})
                     for regime, d in (("eager", eager), ("serving", served))}
    return out


EXPERIMENT = "perf-render-crossover"
"""MLflow experiment of the measurement (`vtc-lab report tracking.experiment=perf-render-crossover`)."""


def log_to_mlflow(args, name: str, sweep: dict, pred_curves: dict, render_pp: float,
                  prep_pp: float) -> list[str]:
    """One MLflow run per round length S (each repeat one step of `crossover/<quantity>`: the
    per-repeat values, so the report computes the interval over repeats itself) and one run of
    the cost model's predicted optical - text per S (step = S). Returns the run ids."""
    from vtc_lab.tracking import TrackingConfig, start_run
    from vtc_lab.tracking.crossover_plot import (CROSSOVER_KEYS, MODEL_PARAM, PREDICTED_PARAM,
                                                 ROUND_PARAM, predicted_key)

    tracking = TrackingConfig(mode=args.tracking, experiment=EXPERIMENT, log_config=False)
    common = {MODEL_PARAM: name, "crossover.rounds": args.rounds,
              "crossover.repeats": args.repeats, "crossover.threads": args.threads}
    ids = []
    for s, point in sweep.items():
        with start_run(tracking, None, args.output_root, run_name=f"{name} S={s}") as run:
            run.log_params({**common, ROUND_PARAM: s})
            pairs = zip(point["runs"]["text"], point["runs"]["optical"], point["deltas"],
                        point["work_deltas"])
            for i, (t, o, delta, work) in enumerate(pairs):
                run.log_metrics({CROSSOVER_KEYS["text_s"]: t["latency_s"],
                                 CROSSOVER_KEYS["optical_s"]: o["latency_s"],
                                 CROSSOVER_KEYS["delta_s"]: delta,
                                 CROSSOVER_KEYS["work_delta_s"]: work}, step=i)
            ids.append(run.run_id)
    with start_run(tracking, None, args.output_root, run_name=f"{name} cost model") as run:
        run.log_params({**common, PREDICTED_PARAM: "true", "crossover.predict_rounds":
                        args.predict_rounds, "crossover.render_s_per_page": render_pp,
                        "crossover.preprocess_s_per_page": prep_pp})
        by_s: dict[int, dict[str, float]] = {}
        for (gpu_model, regime), pts in pred_curves.items():
            for s, delta in pts:
                by_s.setdefault(s, {})[predicted_key(gpu_model, regime)] = delta
        for s, values in sorted(by_s.items()):
            run.log_metrics(values, step=s)
        ids.append(run.run_id)
    return ids


def interval(xs: list[float]) -> str:
    from vtc_lab.eval.stats import mean_ci

    iv = mean_ci(xs)
    return (f"{iv.mean:.3f} [{iv.low:.3f}, {iv.high:.3f}]" if iv.has_interval
            else f"{iv.mean:.3f} (n=1)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny_qwen3_vl",
                        help="registered tiny models (tiny_qwen3_vl, tiny_glm4v, tiny_qwen2_5_vl)")
    parser.add_argument("--lengths", default="8,16,32,64,128,256", help="round lengths S")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per problem")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mixed", default="16,128", help="round lengths of the mixed workload")
    parser.add_argument("--mixed-rounds", type=int, default=6)
    parser.add_argument("--threshold", type=int, default=None,
                        help="loop.min_render_tokens of the mixed run (default: the crossover "
                             "end to end, else of the memory work, else of the tokens)")
    parser.add_argument("--predict-rounds", type=int, default=8,
                        help="rounds of the cost-model prediction (the paper's 8)")
    parser.add_argument("--predict-only", metavar="RENDER_S,PREPROCESS_S", default=None,
                        help="no measurement: only the cost model's crossovers, with these "
                             "per-page costs (e.g. a sweep's render_s_per_page and "
                             "preprocess_s_per_page from its JSON)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true",
                        help="S=8,32,128, 2 repeats, 4-round mixed workload")
    parser.add_argument("--json", default="vtc-runs/perf/render_crossover.json")
    parser.add_argument("--tracking", default="local", choices=["local", "off"],
                        help=f"log to MLflow (experiment {EXPERIMENT}, store "
                             "<output-root>/mlflow.db) or not")
    parser.add_argument("--output-root", default="vtc-runs")
    args = parser.parse_args()
    if args.quick:
        args.lengths, args.repeats, args.mixed_rounds = "8,32,128", 2, 4

    if args.predict_only:
        render_pp, prep_pp = (float(x) for x in args.predict_only.split(","))
        for gpu_model, regimes in predicted(render_pp, prep_pp, args.predict_rounds).items():
            for regime, p in regimes.items():
                c = p["crossover"]
                print(f"crossover ({gpu_model}, one H100, cost model, {regime}, "
                      f"{args.predict_rounds} rounds, {render_pp * 1e3:.1f} ms render + "
                      f"{prep_pp * 1e3:.1f} ms preprocessing per page): "
                      + (f"S* = {c:.0f} tokens per round" if c is not None
                         else "none in 8..16384"), flush=True)
        return

    import torch

    torch.set_num_threads(args.threads)
    from vtc_lab.infer.evaluate import load_problems
    from vtc_lab.models import ModelConfig, load_backbone

    lengths = [int(x) for x in args.lengths.split(",")]
    mixed = [int(x) for x in args.mixed.split(",")]
    forcing = _loop_latency().forcing_engine_class()
    solutions = "\n\n".join(p.meta.get("solution") or p.question
                            for p in load_problems("math500", 500, 0))
    print(f"# {args.threads} thread(s), torch {torch.__version__}, load average "
          f"{os.getloadavg()[0]:.1f} at start", flush=True)
    report: dict = {"args": vars(args), "models": {}}
    for name in args.models.split(","):
        backbone = load_backbone(ModelConfig(name=name, arch=name.removeprefix("tiny_")))
        backbone.model.eval()
        stream = backbone.tokenizer(solutions, add_special_tokens=False)["input_ids"]
        banned = set(backbone.tokenizer.all_special_ids) | {
            backbone.tokenizer.convert_tokens_to_ids("</think>")}
        stream = [t for t in stream if t not in banned]
        engine = forcing(backbone, stream)
        run_once(engine, "optical", 2, min(lengths))  # warm-up
        sweep = {}
        print(f"## {name}: {args.rounds} rounds of S tokens, {args.repeats} repeats "
              "(seconds; mean [95 % CI]; 'memory work' = render + preprocess + vision + prefill, "
              "everything but decode)", flush=True)
        print("| S | text | optical | optical - text | memory work optical - text | "
              "decode optical - text | optical render / prep / vision / prefill | "
              "memory tokens per round text / optical |")
        print("|---|---|---|---|---|---|---|---|")
        for s in lengths:
            runs = {"text": [], "optical": []}
            for _ in range(args.repeats):
                for mode in ("text", "optical"):
                    runs[mode].append(run_once(engine, mode, args.rounds, s))
            pairs = list(zip(runs["text"], runs["optical"]))
            deltas = [o["latency_s"] - t["latency_s"] for t, o in pairs]
            work = [memory_work(o) - memory_work(t) for t, o in pairs]
            decode = [o["decode_s"] - t["decode_s"] for t, o in pairs]
            sweep[s] = dict(runs=runs, deltas=deltas, work_deltas=work, decode_deltas=decode)
            o = runs["optical"]

            def avg(key, rs=o):
                return sum(r[key] for r in rs) / len(rs)

            memory_rounds = max(1, args.rounds - 1)
            print(f"| {s} | {interval([r['latency_s'] for r in runs['text']])} | "
                  f"{interval([r['latency_s'] for r in o])} | {interval(deltas)} | "
                  f"{interval(work)} | {interval(decode)} | "
                  f"{avg('render_s'):.3f} / {avg('preprocess_s'):.3f} / {avg('vision_s'):.3f} / "
                  f"{avg('prefill_s'):.3f} | {s} / "
                  f"{avg('memory_vision_tokens') / memory_rounds:.1f} |", flush=True)
        cross = crossover([(s, sum(v["deltas"]) / len(v["deltas"])) for s, v in sweep.items()])
        work_cross = crossover([(s, sum(v["work_deltas"]) / len(v["work_deltas"]))
                                for s, v in sweep.items()])
        token_cross = crossover([(s, sum(r["memory_vision_tokens"] for r in v["runs"]["optical"])
                                  / len(v["runs"]["optical"]) / max(1, args.rounds - 1) - s)
                                 for s, v in sweep.items()])
        settled = [s for s, v in sweep.items() if _excludes_zero(v["deltas"])]
        pages = sum(r["pages"] for v in sweep.values() for r in v["runs"]["optical"])
        render_pp = sum(r["render_s"] for v in sweep.values() for r in v["runs"]["optical"]) / pages
        prep_pp = sum(r["preprocess_s"] for v in sweep.values()
                      for r in v["runs"]["optical"]) / pages

        def said(c):
            return (f"S* = {c:.0f} tokens per round" if c is not None else
                    f"none in S = {lengths[0]}..{lengths[-1]} (one sign throughout)")

        print(f"crossover ({name}, CPU, measured, end to end): {said(cross)}; the 95 % CI of "
              f"optical - text excludes 0 at S = {settled or 'none'}", flush=True)
        print(f"crossover ({name}, CPU, measured, memory work only): {said(work_cross)}",
              flush=True)
        print(f"crossover ({name}, tokens: a round's page costs fewer prompt tokens than its "
              f"text): {said(token_cross)}", flush=True)
        found = next((c for c in (cross, work_cross, token_cross) if c is not None), None)
        threshold = args.threshold or (math.ceil(found) if found is not None else None)
        both = None
        if threshold:
            engine = mixed_engine_class(forcing)(backbone, stream, mixed)
            both = {"all": [], "threshold": [], "text": []}
            budget = max(mixed) + 1  # the longest round and its end-of-turn token
            for _ in range(args.repeats):
                both["all"].append(run_once(engine, "optical", args.mixed_rounds, budget))
                both["threshold"].append(run_once(engine, "optical", args.mixed_rounds,
                                                  budget, threshold))
                both["text"].append(run_once(engine, "text", args.mixed_rounds, budget))
            for what, key in (("latency", lambda r: r["latency_s"]), ("memory work", memory_work)):
                diff = [key(a) - key(b) for a, b in zip(both["all"], both["threshold"])]
                print(f"mixed rounds {mixed} x {args.mixed_rounds}, {what}: optical, every round "
                      f"rendered {interval([key(r) for r in both['all']])} s; "
                      f"min_render_tokens={threshold} "
                      f"{interval([key(r) for r in both['threshold']])} s "
                      f"({both['threshold'][0]['text_rounds']} rounds kept as text); text "
                      f"{interval([key(r) for r in both['text']])} s; rendered - threshold "
                      f"{interval(diff)} s", flush=True)
        report["models"][name] = dict(sweep=sweep, crossover=cross, work_crossover=work_cross,
                                      token_crossover=token_cross, settled=settled,
                                      render_s_per_page=render_pp,
                                      preprocess_s_per_page=prep_pp, threshold=threshold,
                                      both=both)
        pred_curves: dict = {}
        pred = predicted(render_pp, prep_pp, args.predict_rounds, curves=pred_curves)
        report["models"][name]["predicted"] = pred
        if args.tracking != "off":
            ids = log_to_mlflow(args, name, sweep, pred_curves, render_pp, prep_pp)
            report["models"][name]["mlflow_runs"] = ids
            print(f"# logged {len(ids)} MLflow runs (experiment {EXPERIMENT}, under "
                  f"{args.output_root}): vtc-lab report tracking.experiment={EXPERIMENT} "
                  f"output_root={args.output_root}", flush=True)
        for gpu_model, regimes in pred.items():
            for regime, p in regimes.items():
                c = p["crossover"]
                print(f"crossover ({gpu_model}, one H100, cost model, {regime}, "
                      f"{args.predict_rounds} rounds, this machine's {render_pp * 1e3:.1f} ms "
                      f"render + {prep_pp * 1e3:.1f} ms preprocessing per page): "
                      + (f"S* = {c:.0f} tokens per round" if c is not None
                         else "none in 8..16384"), flush=True)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    print(f"# wrote {out}; load average {os.getloadavg()[0]:.1f} at the end "
          f"({time.strftime('%H:%M:%S')})")


if __name__ == "__main__":
    main()
