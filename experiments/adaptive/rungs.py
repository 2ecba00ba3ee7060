"""Where the adaptive models misread (issue 23 §4): the read rate of each memory page by the
ladder rung it was drawn with, from an evaluation's saved predictions.

A page is "read" when the next round's first line is exactly the page's last line stepped once
(`vtc_lab.task.toytask.next_line`, the toy reading check); the rung is known from the page's
vision tokens (`memory_vision_tokens` of the round that wrote it: each rung has its own page
size). Counts are pooled over the files given (one per model), with a Wilson 95 % interval
per rung and, per file, the numbers behind it.

    python experiments/adaptive/rungs.py /work/runs/adaptive/eval/3/toy-*/toy__optical.jsonl
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from scipy.stats import binomtest

from vtc_lab.task.toytask import RULES, next_line
from vtc_lab.textio import read_jsonl

RUNG_OF_TOKENS = {25: "rung 0 (80x80 px, 16-px glyphs)", 64: "rung 1 (128x128 px, 24-px glyphs)",
                  36: "fixed 96x96 px, 18-px glyphs", 16: "fixed 64x64 px, 12-px glyphs"}


def page_reads(path: str) -> list[tuple[int, bool]]:
    """(vision tokens of the page, read right) for every page a later round read."""
    out = []
    for line in read_jsonl(path):
        row = line.row
        if line.error or not isinstance(row, dict) or "rounds" not in row:
            continue  # the header, or a damaged line
        rule = row["problem_id"].split("-", 1)[0]
        if rule not in RULES:
            raise ValueError(f"{line.where}: problem id {row['problem_id']!r} names no toy rule")
        rounds = row["rounds"]
        for here, after in zip(rounds, rounds[1:]):
            lines = [x for x in here["text"].splitlines() if x.strip()]
            following = [x for x in after["text"].splitlines() if x.strip()]
            if not here.get("new_images") or not lines or not following:
                continue
            want = next_line(lines[-1], rule)
            out.append((int(here["memory_vision_tokens"]), following[0] == want))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("predictions", nargs="+", help="toy__optical.jsonl files of evaluations")
    args = ap.parse_args()
    pooled: dict[int, list[bool]] = defaultdict(list)
    for path in args.predictions:
        per: dict[int, list[bool]] = defaultdict(list)
        for tokens, ok in page_reads(path):
            per[tokens].append(ok)
            pooled[tokens].append(ok)
        print(path + ": " + "; ".join(f"{t} tokens {sum(v)}/{len(v)}" for t, v in sorted(per.items())))
    print("\npooled:")
    for tokens, reads in sorted(pooled.items()):
        ci = binomtest(sum(reads), len(reads)).proportion_ci(0.95, method="wilson")
        print(f"  {RUNG_OF_TOKENS.get(tokens, f'{tokens} tokens'):<36} read {sum(reads) / len(reads):.3f} "
              f"[{ci.low:.3f}, {ci.high:.3f}] of {len(reads)} pages")


if __name__ == "__main__":
    main()
