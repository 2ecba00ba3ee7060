"""How the adaptive ladder and its target were chosen (issue 23 §4): the reference reader's
legibility of toy rounds per rendering setting and page degradation, and what the adaptive
renderer draws (rungs, vision tokens per round) on the same rounds.

No model is involved: this is the renderer's own view of the pages, in seconds on a CPU.
Rounds are the held-out toy problems' solution lines cut into rounds of `lines_per_round`
lines, as the toy segmenter cuts them. Vision tokens are what the toy model's image processor
makes of the page as drawn (`vtc_lab.render.vision_tokens`).

    python experiments/adaptive/calibrate.py                      # 200 problems, every level
    python experiments/adaptive/calibrate.py --problems 50 --levels severe
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

import yaml

from vtc_lab.render import RenderConfig, render_with_layout
from vtc_lab.render.adaptive import legibility
from vtc_lab.render.degrade import LEVELS
from vtc_lab.render.vision import get_spec, vision_tokens
from vtc_lab.task.toytask import ToyTaskSpec, heldout_problems

CONF = Path(__file__).resolve().parents[2] / "conf" / "renderer"
PRESETS = ("toy_task", "toy_task_f18", "toy_task_adaptive")


def rounds(problems: int) -> list[str]:
    spec = ToyTaskSpec()
    out = []
    for p in heldout_problems(spec, problems):
        lines = list(p.lines)
        out += ["\n".join(lines[i:i + spec.lines_per_round])
                for i in range(0, len(lines), spec.lines_per_round)]
    return out


def toy_vision_spec():
    """The toy model's image processor: Qwen3-VL's, with the patch size and pixel floor of
    conf/model/tiny_qwen3_vl_toy.yaml."""
    model = yaml.safe_load((CONF.parent / "model" / "tiny_qwen3_vl_toy.yaml").read_text())
    return dataclasses.replace(get_spec("qwen3_vl"), patch_size=model["tiny"]["patch_size"],
                               temporal_patch_size=model["tiny"]["temporal_patch_size"],
                               min_pixels=model["min_pixels"])


TOY_SPEC = toy_vision_spec()


def tokens(images) -> int:
    return sum(vision_tokens(im.width, im.height, TOY_SPEC) for im in images)


def settings(level: str) -> dict[str, RenderConfig]:
    """Every fixed setting to score: the presets' own, plus each rung of the adaptive ladder."""
    out = {}
    for name in PRESETS:
        cfg = RenderConfig(**yaml.safe_load((CONF / f"{name}.yaml").read_text()),
                           degrade={"level": level})
        if cfg.adaptive.active:
            out.update({f"{name} rung {i}": c for i, c in enumerate(cfg.candidates())})
        else:
            out[name] = cfg
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", type=int, default=200)
    ap.add_argument("--levels", default=",".join(LEVELS))
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args()
    texts = rounds(args.problems)
    result = {"rounds": len(texts), "levels": {}}
    print(f"{len(texts)} rounds of {args.problems} held-out toy problems")
    for level in args.levels.split(","):
        rows = {}
        for name, cfg in settings(level).items():
            plain = dataclasses.replace(cfg, degrade=dataclasses.replace(cfg.degrade, level="none"))
            scores, toks = [], []
            for t in texts:
                clean = render_with_layout(t, plain)
                pages = render_with_layout(t, cfg, boxes=False).images
                scores.append(legibility(clean.images, pages, clean.boxes))
                toks.append(tokens(pages))
            rows[name] = dict(legibility_mean=statistics.fmean(scores),
                              at_least_0_9=sum(s >= 0.9 for s in scores) / len(scores),
                              perfect=sum(s >= 1.0 for s in scores) / len(scores),
                              tokens_per_round=statistics.fmean(toks))
        adaptive = RenderConfig(**yaml.safe_load((CONF / "toy_task_adaptive.yaml").read_text()),
                                degrade={"level": level})
        drawn = [render_with_layout(t, adaptive, boxes=False) for t in texts]
        rows["toy_task_adaptive (drawn)"] = dict(
            legibility_mean=statistics.fmean(r.legibility[r.adaptive_choice] for r in drawn),
            at_least_0_9=sum(r.legibility[r.adaptive_choice] >= 0.9 for r in drawn) / len(drawn),
            perfect=sum(r.legibility[r.adaptive_choice] >= 1.0 for r in drawn) / len(drawn),
            tokens_per_round=statistics.fmean(tokens(r.images) for r in drawn),
            rung_share=[sum(r.adaptive_choice == k for r in drawn) / len(drawn)
                        for k in range(len(adaptive.adaptive.settings))])
        result["levels"][level] = rows
        print(f"\n{level} pages:\n  {'setting':<28}{'legibility':>11}{'>= 0.9':>8}{'perfect':>9}{'tokens/round':>14}")
        for name, r in rows.items():
            extra = f"   rungs {', '.join(f'{s:.2f}' for s in r['rung_share'])}" if "rung_share" in r else ""
            print(f"  {name:<28}{r['legibility_mean']:>11.3f}{r['at_least_0_9']:>8.2f}"
                  f"{r['perfect']:>9.2f}{r['tokens_per_round']:>14.1f}{extra}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
