"""Do the pages carry the state? A causal check of a trained optical-memory toy model.

The no-memory ablation shows the model needs its pages, but not what it takes from them: every
line of a toy trace is a fixed function of the question's start state, so a model could in
principle read only the countdown letter from a page and recompute the digits from the question.
This check swaps the memory. For held-out problem p and round r (2..4) the prompt is exactly the
optical loop's (question + pages of rounds 1..r-1, the renderer and layout the model was trained
with), except that the newest page is drawn from the same round of ANOTHER held-out problem q
(same countdown letters, different digits). The round's first line then tells what the model used:
- `follows_page`: the step after q's line (it read the digits off the swapped page);
- `follows_question`: the step after p's own line (it recomputed from the question);
- `neither`: anything else (typically the page's line with one digit taken elsewhere: the
  older pages are still the problem's own, a history the model never saw mixed in training);
- per digit, where the two candidate lines differ: the share taken from the swapped page and
  the share taken from the problem's own trace.
The unswapped prompt is run too, as the control (`intact`: page and question agree, so
`follows page` there means the right line).

    python experiments/toy/counterfactual.py --export vtc-runs/toy/0/export --problems 200

Prints a table and writes it as JSON (`--out`, default `<export>/../counterfactual.json`).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from vtc_lab.data import build_messages
from vtc_lab.task import toytask
from vtc_lab.infer.engine import GenerationParams, GenerationRequest, HFEngine
from vtc_lab.infer.loop import default_renderer
from vtc_lab.models import ModelConfig, load_backbone
from vtc_lab.models.reading import read_reading


def round_texts(problem: toytask.ToyProblem, lines_per_round: int) -> list[str]:
    """The problem's rounds as the model writes them (each non-final round ends with a newline)."""
    lines = problem.lines
    return ["".join(f"{ln}\n" for ln in lines[i:i + lines_per_round])
            for i in range(0, len(lines), lines_per_round)]


def first_line(text: str) -> str:
    return next((ln.strip() for ln in text.split("</think>")[0].splitlines() if ln.strip()), "")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--export", required=True, help="the optical-memory model's export directory")
    ap.add_argument("--problems", type=int, default=200, help="held-out problems (default 200)")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0, help="seed of the swap partner choice")
    ap.add_argument("--out", default=None, help="JSON result (default <export>/../counterfactual.json)")
    args = ap.parse_args(argv)

    export = Path(args.export)
    reading = read_reading(export)
    if reading is None:
        sys.exit(f"{export} has no reading.json: not a model exported by `vtc-lab train`")
    spec = toytask.ToyTaskSpec()
    problems = toytask.heldout_problems(spec, args.problems)
    render = default_renderer(reading.renderer)
    engine = HFEngine(load_backbone(ModelConfig(name="toy-export", source="pretrained",
                                                arch="auto", path=str(export))))
    params = GenerationParams(max_new_tokens=12, do_sample=False)
    rng = random.Random(args.seed)

    rendered: dict[str, list[list]] = {}  # problem id -> the pages of each of its rounds

    def round_pages(problem: toytask.ToyProblem) -> list[list]:
        if problem.id not in rendered:
            rendered[problem.id] = [render(text)[0]
                                    for text in round_texts(problem, spec.lines_per_round)]
        return rendered[problem.id]

    cases = []  # (problem, round, condition, prompt images, wanted-by-page, wanted-by-question)
    for p in problems:
        rounds = round_texts(p, spec.lines_per_round)
        partners = [x for x in problems[:50] if x.id != p.id and len(x.lines) == len(p.lines)]
        for r in range(2, len(rounds) + 1):
            q = rng.choice(partners)
            by_question = toytask.next_line(rounds[r - 2].splitlines()[-1], spec.rule)
            by_page = toytask.next_line(round_texts(q, spec.lines_per_round)[r - 2].splitlines()[-1],
                                        spec.rule)
            if by_page == by_question:
                continue  # the swap would not change the answer
            earlier = [page for pages in round_pages(p)[:r - 2] for page in pages]
            intact = earlier + round_pages(p)[r - 2]
            swapped = earlier + round_pages(q)[r - 2]
            for condition, images in (("intact", intact), ("swapped", swapped)):
                cases.append((p, r, condition, images, by_page, by_question))

    counts: dict[str, dict[str, int]] = {}
    for start in range(0, len(cases), args.batch_size):
        batch = cases[start:start + args.batch_size]
        requests = [GenerationRequest(build_messages(p.question, images, reading.system_prompt,
                                                     reading.image_position))
                    for p, _, _, images, _, _ in batch]
        for (p, r, condition, _, by_page, by_question), out in zip(batch, engine.generate(requests, params)):
            line = first_line(out.text)
            if condition == "intact":  # page and question agree: right or wrong
                verdict = "follows_page" if line == by_question else "neither"
            else:
                verdict = ("follows_page" if line == by_page else
                           "follows_question" if line == by_question else "neither")
            row = counts.setdefault(condition, {"cases": 0, "follows_page": 0,
                                                "follows_question": 0, "neither": 0,
                                                "digits": 0, "digits_page": 0, "digits_own": 0})
            row["cases"] += 1
            row[verdict] += 1
            if condition == "swapped":  # per digit where the two candidate lines differ
                got = toytask.parse_line(line)
                page, own = toytask.parse_line(by_page)[1], toytask.parse_line(by_question)[1]
                for i, (a, b) in enumerate(zip(page, own)):
                    if a != b:
                        row["digits"] += 1
                        if got is not None and len(got[1]) == len(page):
                            row["digits_page"] += got[1][i] == a
                            row["digits_own"] += got[1][i] == b

    result = {"export": str(export.resolve()), "problems": len(problems), "rule": spec.rule,
              "rounds_checked": "2..4", "counts": counts}
    print(f"{'condition':<10}{'cases':>7}{'follows page':>14}{'follows question':>18}{'neither':>9}"
          f"{'digits':>8}{'digit from page':>17}{'digit from own trace':>22}")
    for condition, row in counts.items():
        n, d = row["cases"], row["digits"]
        digits = (f"{d:>8}{row['digits_page'] / d:>17.3f}{row['digits_own'] / d:>22.3f}" if d
                  else f"{'-':>8}{'-':>17}{'-':>22}")
        print(f"{condition:<10}{n:>7}{row['follows_page'] / n:>14.3f}"
              f"{row['follows_question'] / n:>18.3f}{row['neither'] / n:>9.3f}" + digits)
    out = Path(args.out) if args.out else export.parent / "counterfactual.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
