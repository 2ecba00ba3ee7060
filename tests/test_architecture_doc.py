"""docs/architecture.md's layer diagram matches the tree: every package and top-level module it
names exists, every one in the tree is named, and the lines run from the highest layer down in
the order tests/test_layers.py enforces."""

from __future__ import annotations

import re
from pathlib import Path

import vtc_lab
from tests.test_layers import RANK

ROOT = Path(vtc_lab.__file__).parent
DOC = ROOT.parent / "docs" / "architecture.md"


def diagram() -> list[list[str]]:
    """The names on each line of the code block under '## Layers', top line first."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Layers", 1)[1]
    block = section.split("```", 2)[1]
    rows = []
    for line in block.strip("\n").splitlines():
        if line[:1].isspace():  # the description of the line above, continued
            continue
        parts = re.split(r"\s{2,}", line.strip())
        names = parts if len(parts) == 1 else parts[:-1]  # alone: its description is below
        rows.append([n for part in names for n in re.split(r"[\s,]+", part) if n])
    return rows


def tree() -> tuple[set[str], set[str]]:
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()} - {"conf"}
    modules = {f"vtc_lab.{p.stem}" for p in ROOT.glob("*.py") if p.stem != "__init__"}
    return packages, modules


def test_the_diagram_names_exactly_the_packages_and_top_level_modules():
    named = [n for row in diagram() for n in row]
    packages, modules = tree()
    assert {n for n in named if not n.startswith("vtc_lab.")} == packages
    assert {n for n in named if n.startswith("vtc_lab.")} == modules
    assert len(named) == len(set(named)), "a name appears twice in the diagram"


def test_the_diagram_runs_down_the_layers_of_the_layer_test():
    ranks = [{RANK[n] if not n.startswith("vtc_lab.") else RANK["vtc_lab (top-level module)"]
              for n in row} for row in diagram()]
    assert all(len(r) == 1 for r in ranks), "one layer per line"
    flat = [r.pop() for r in ranks]
    assert flat == sorted(flat, reverse=True) and len(set(flat)) == len(flat)


def test_the_parser_sees_a_missing_package(tmp_path):
    """Not vacuous: a diagram without `serve` and with a package that does not exist fails."""
    doc = tmp_path / "architecture.md"
    doc.write_text(DOC.read_text(encoding="utf-8").replace("train   serve", "train   nosuch"))
    globals()["DOC"], old = doc, DOC
    try:
        named = {n for row in diagram() for n in row}
        assert "serve" not in named and "nosuch" in named
    finally:
        globals()["DOC"] = old


MAX_MODULE_LINES = 420


def test_no_module_is_a_hub():
    """Modules stay a few hundred lines (docs/STYLE: split by concern past ~400): a hub that
    grows past the limit fails here, naming it, rather than in the next review."""
    sizes = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines())
             for p in ROOT.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}
