"""The package's layering, checked on the source: imports point down, never up.

    render segment task eval tracking (leaves)  <-  models  <-  data  <-  infer  <-  train, serve  <-  cli

and below the leaves the package's own top-level modules (`vtc_lab.atomic`, ...), which import
no stage at all.

Every import counts, top-level or inside a function (a lazy import is still a dependency);
only imports under `if TYPE_CHECKING:` are left out, since they never run. There is no list of
exceptions: a module that needs something from a higher layer is in the wrong package.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import vtc_lab

ROOT = Path(vtc_lab.__file__).parent
RANK = {"render": 0, "segment": 0, "task": 0, "eval": 0, "tracking": 0, "models": 1, "data": 2, "infer": 3,
        "train": 4, "serve": 4, "cli": 5}
BASE = "vtc_lab (top-level module)"
RANK[BASE] = -1
NO_TORCH = ("torch", "torchvision", "transformers", "lightning", "deepspeed", "peft")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST):
    """ast.walk that does not enter `if TYPE_CHECKING:` bodies."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield other
                yield from _walk(other)
            continue
        yield child
        yield from _walk(child)


def imports_of(module: str, text: str, is_package: bool = False) -> list[tuple[int, str, bool]]:
    """(line, absolute module name, at top level?) of every import in a module's source."""
    tree = ast.parse(text)
    package = module if is_package else module.rsplit(".", 1)[0]
    top = {id(n) for n in tree.body}
    out = []
    for node in _walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.append((node.lineno, base, id(node) in top))
            # `from vtc_lab.x import y` may import the submodule vtc_lab.x.y
            out += [(node.lineno, f"{base}.{a.name}", id(node) in top) for a in node.names
                    if f"{base}.{a.name}" in SOURCES]
    return out


def _imports(module: str) -> list[tuple[int, str, bool]]:
    path = SOURCES[module]
    return imports_of(module, path.read_text(encoding="utf-8"), path.name == "__init__.py")


def _stage(module: str) -> str | None:
    """The layer of a vtc_lab module: its stage package, or BASE for a top-level module."""
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "vtc_lab":
        return None
    if parts[1] in RANK:
        return parts[1]
    return BASE if module in SOURCES and len(parts) == 2 else None


def layer_violations(imports: dict[str, list[tuple[int, str, bool]]]) -> list[str]:
    """`module:line: importer imports target` for each import of a higher layer."""
    bad = []
    for module, found in imports.items():
        importer = _stage(module)
        for line, target, _ in found if importer else ():
            stage = _stage(target)
            if stage is not None and RANK[stage] > RANK[importer]:
                bad.append(f"{module}:{line}: {importer} (rank {RANK[importer]}) imports "
                           f"{target} (rank {RANK[stage]})")
    return bad


def test_every_stage_package_has_a_rank():
    # `conf` is the packaged YAML (vtc_lab/conf/ exists in an installed wheel), not code
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()} - {"conf"}
    assert packages == set(RANK) - {BASE}, "a new sub-package needs its place in RANK (and in the docs)"


def test_imports_point_down():
    assert layer_violations({m: _imports(m) for m in SOURCES}) == []


def test_the_rule_catches_an_upward_import():
    """Not vacuous: an upward import (models -> train), even a lazy one inside a function, is
    reported; one under `if TYPE_CHECKING:` is not; a downward one is fine."""
    text = ("from typing import TYPE_CHECKING\n"
            "from vtc_lab.render import render_text\n"
            "if TYPE_CHECKING:\n    import vtc_lab.cli.train\n"
            "def f():\n    from vtc_lab.train.collate import collate\n")
    found = imports_of("vtc_lab.models.probe", text)
    assert layer_violations({"vtc_lab.models.probe": found}) == [
        "vtc_lab.models.probe:6: models (rank 1) imports vtc_lab.train.collate (rank 4)"]
    assert layer_violations({"vtc_lab.atomic": imports_of("vtc_lab.atomic", text)}) == [
        "vtc_lab.atomic:2: vtc_lab (top-level module) (rank -1) imports vtc_lab.render (rank 0)",
        "vtc_lab.atomic:6: vtc_lab (top-level module) (rank -1) imports vtc_lab.train.collate "
        "(rank 4)"]


def _module_cycles() -> list[list[str]]:
    """Cycles among vtc_lab's modules, lazy imports included: two modules that need each other
    are one module or a missing third one (a lazy import only hides the knot)."""
    graph: dict[str, set[str]] = {}
    for name in SOURCES:
        graph[name] = {t for _, t, _top in _imports(name) if t in SOURCES
                       and t != name and not name.startswith(t + ".")}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return cycles


def test_no_import_cycles_between_modules():
    assert _module_cycles() == []


def _files_importing(prefixes: tuple[str, ...]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for name, path in SOURCES.items():
        for line, target, _ in _imports(name):
            if target.split(".")[0] in prefixes:
                out.setdefault(str(path.relative_to(ROOT)), []).append(line)
    return out


def test_only_tracking_imports_mlflow():
    outside = {f: lines for f, lines in _files_importing(("mlflow",)).items()
               if not f.startswith("tracking/")}
    assert outside == {}


def test_only_models_calls_from_pretrained():
    calls = []
    for path in SOURCES.values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "from_pretrained"):
                calls.append((str(path.relative_to(ROOT)), node.lineno))
    assert calls, "the check found no from_pretrained call at all: it is looking in the wrong place"
    assert [c for c in calls if not c[0].startswith("models/")] == []


LONE_LEAVES = ("render", "segment", "task")


def test_render_segment_and_task_import_no_other_stage():
    """These leaves stand alone: besides themselves they import only the top-level helpers
    (render was not one: its `vtc-lab render` app read benchmarks and logged to MLflow; the app
    now lives in data.render_app)."""
    bad = []
    for module in SOURCES:
        stage = _stage(module)
        if stage not in LONE_LEAVES:
            continue
        for line, target, _ in _imports(module):
            other = _stage(target)
            if other not in (None, BASE, stage):
                bad.append(f"{module}:{line} imports {target}")
    assert bad == []


@pytest.mark.parametrize("package", ["render", "segment", "task"])
def test_render_and_segment_import_no_torch_in_source(package):
    heavy = {f: lines for f, lines in _files_importing(NO_TORCH).items()
             if f.startswith(f"{package}/")}
    assert heavy == {}


def test_render_and_segment_import_no_torch_at_run_time():
    """Rendering, tokenising with the offline Qwen BPE and segmenting load neither torch nor
    mlflow: the leaves stay usable on their own."""
    code = ("import sys, vtc_lab.render as r, vtc_lab.segment as s; r.render_text('x'); "
            "tok = r.qwen_tokenizer(); s.segment_text('a b. c d.', s.SegmentationConfig(), tok); "
            "print('torch' in sys.modules, 'mlflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# What `vtc-lab eval engine=openai` runs in the client process: the engine API, the OpenAI
# engine and the loop with its text/image handling. A client machine need not have torch.
CLIENT = ("infer/engine_api.py", "infer/openai_engine.py", "infer/openai_answers.py",
          "infer/openai_servers.py", "infer/openai_wire.py", "infer/engines.py",
          "infer/loop.py", "infer/memory.py", "infer/evaluate.py", "infer/metrics.py",
          "infer/records.py", "infer/predictions.py", "infer/engine_config.py", "infer/config.py")


def test_the_openai_client_imports_no_torch_in_source():
    heavy = {f: lines for f, lines in _files_importing(NO_TORCH).items() if f in CLIENT}
    assert heavy == {}
    assert all((ROOT / f).is_file() for f in CLIENT), "a client module moved: update CLIENT"


def test_the_openai_client_imports_no_torch_at_run_time():
    """Importing the OpenAI engine, the loop and the evaluation driver loads no torch (the
    end-to-end check, an eval with torch unimportable, is tests/infer/test_openai_client.py)."""
    code = ("import sys, vtc_lab.infer.openai_engine, vtc_lab.infer.loop, vtc_lab.infer.evaluate, "
            "vtc_lab.infer.offline; print(*(m in sys.modules for m in ('torch', 'transformers')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
