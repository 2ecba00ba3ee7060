"""A small mutation pass: break one thing at a time in a module and see whether its tests notice.

    python experiments/mutation/mutate.py vtc_lab/task/completion.py tests/task/test_completion.py
    python experiments/mutation/mutate.py vtc_lab/infer/loop.py tests/infer/test_loop.py \\
        --functions stop_reason generation_params

Each mutant changes one AST node of the module (in the named functions, or anywhere but
docstrings): a comparison flipped (`<` <-> `<=`, `==` <-> `!=`, `in` <-> `not in`, ...), `and`
<-> `or`, a `not` dropped, `+` <-> `-`, an int constant moved by one, an `if` body or a
`break`/`continue` deleted, a returned value replaced by None. The module is rewritten with
`ast.unparse` in a copy of the repository under a temp dir (the working tree is never touched),
then the given tests run there (`pytest -x`, one mutant at a time, niced). A mutant whose tests
still pass "survives"; the report lists survivors by line so each is either killed by a new test
or accepted with a reason (docs/testing.md). No mutmut needed; standard library only.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FLIP_COMPARE = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
                ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
                ast.Is: ast.IsNot, ast.IsNot: ast.Is}


@dataclass
class Mutant:
    index: int
    line: int
    function: str
    kind: str
    original: str
    mutated: str
    status: str = ""
    seconds: float = 0.0


def _is_docstring(node: ast.AST, parent: ast.AST | None) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str))


def _sites(tree: ast.Module, functions: set[str] | None):
    """(node path, kind) of every mutation site, in a deterministic walk order."""
    out = []

    def visit(node: ast.AST, path: tuple, func: str) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            func = node.name
        if _is_docstring(node, None):
            return
        active = functions is None or func in functions
        if active:
            if isinstance(node, ast.Compare):
                for i, op in enumerate(node.ops):
                    if type(op) in FLIP_COMPARE:
                        out.append((path, f"compare:{i}", func))
            elif isinstance(node, ast.BoolOp):
                out.append((path, "boolop", func))
            elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
                out.append((path, "drop_not", func))
            elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
                out.append((path, "addsub", func))
            elif (isinstance(node, ast.Constant) and type(node.value) is int
                  and func != "<module>"):
                out.append((path, "int+1", func))
            elif isinstance(node, ast.If):
                out.append((path, "drop_if_body", func))
            elif isinstance(node, (ast.Break, ast.Continue)):
                out.append((path, "drop_jump", func))
            elif (isinstance(node, ast.Return) and node.value is not None
                  and not (isinstance(node.value, ast.Constant) and node.value.value is None)):
                out.append((path, "return_none", func))
        for name, value in ast.iter_fields(node):
            if isinstance(value, list):
                for i, child in enumerate(value):
                    if isinstance(child, ast.AST):
                        visit(child, path + ((name, i),), func)
            elif isinstance(value, ast.AST):
                visit(value, path + ((name, None),), func)

    visit(tree, (), "<module>")
    return out


def _node_at(tree: ast.AST, path: tuple) -> ast.AST:
    node = tree
    for name, i in path:
        node = getattr(node, name) if i is None else getattr(node, name)[i]
    return node


def _apply(tree: ast.Module, path: tuple, kind: str) -> ast.Module:
    tree = copy.deepcopy(tree)
    node = _node_at(tree, path)
    if kind.startswith("compare:"):
        i = int(kind.split(":")[1])
        node.ops[i] = FLIP_COMPARE[type(node.ops[i])]()
    elif kind == "boolop":
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif kind == "drop_not":
        parent_path, (name, i) = path[:-1], path[-1]
        parent = _node_at(tree, parent_path)
        replacement = node.operand
        if i is None:
            setattr(parent, name, replacement)
        else:
            getattr(parent, name)[i] = replacement
    elif kind == "addsub":
        node.op = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()
    elif kind == "int+1":
        node.value = node.value + 1
    elif kind == "drop_if_body":
        node.body = [ast.Pass()]
    elif kind == "drop_jump":
        parent_path, (name, i) = path[:-1], path[-1]
        getattr(_node_at(tree, parent_path), name)[i] = ast.Pass()
    elif kind == "return_none":
        node.value = ast.Constant(None)
    return ast.fix_missing_locations(tree)


def _copy_repo(dest: Path) -> None:
    for name in ("vtc_lab", "tests", "conf", "pyproject.toml"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif src.exists():
            shutil.copy2(src, dest / name)


def _run_tests(workdir: Path, tests: list[str], timeout: int) -> tuple[str, float]:
    env = dict(os.environ, PYTHONPATH=str(workdir), PYTHONDONTWRITEBYTECODE="1")
    cmd = ["nice", "-n", "10", sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
           "-m", "not slow", *tests]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return "killed (timeout)", time.perf_counter() - start
    took = time.perf_counter() - start
    if proc.returncode == 0:
        return "survived", took
    if proc.returncode == 1:
        return "killed", took
    return f"killed (pytest exit {proc.returncode})", took


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("module", help="source file, relative to the repository root")
    ap.add_argument("tests", nargs="+", help="test files / node ids that cover the module")
    ap.add_argument("--functions", nargs="*", help="mutate only inside these functions")
    ap.add_argument("--timeout", type=int, default=0,
                    help="seconds per mutant's test run (0: three times the baseline's + 15; a "
                         "mutant that loops forever counts as killed)")
    ap.add_argument("--limit", type=int, default=0, help="at most this many mutants (0: all)")
    ap.add_argument("--only", type=int, nargs="*", help="run only these mutant numbers")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args(argv)

    source = (ROOT / args.module).read_text()
    tree = ast.parse(source)
    lines = source.splitlines()
    sites = _sites(tree, set(args.functions) if args.functions else None)
    baseline = ast.unparse(tree)
    mutants: list[tuple[Mutant, str]] = []
    for path, kind, func in sites:
        mutated_tree = _apply(tree, path, kind)
        text = ast.unparse(mutated_tree)
        if text == baseline:
            continue
        node = _node_at(tree, path)
        line = getattr(node, "lineno", 0)
        new_node = _node_at(mutated_tree, path) if kind not in ("drop_not", "drop_jump") else None
        shown = ast.unparse(new_node).splitlines()[0] if new_node is not None else "(removed)"
        mutants.append((Mutant(len(mutants), line, func, kind, lines[line - 1].strip(), shown),
                        text))
    if args.only:
        mutants = [(m, text) for m, text in mutants if m.index in set(args.only)]
    if args.limit:
        mutants = mutants[:args.limit]
    with tempfile.TemporaryDirectory(prefix="vtc-mutate-") as tmp:
        work = Path(tmp)
        _copy_repo(work)
        target = work / args.module
        target.write_text(baseline)  # the unparsed original must pass, or nothing below counts
        status, took = _run_tests(work, args.tests, args.timeout or 600)
        timeout = args.timeout or int(3 * took + 15)
        if status != "survived":
            print(f"baseline fails ({status}): fix the tests first", file=sys.stderr)
            return 2
        print(f"{args.module}: {len(mutants)} mutants, baseline tests {took:.1f} s", flush=True)
        for mutant, text in mutants:
            target.write_text(text)
            mutant.status, mutant.seconds = _run_tests(work, args.tests, timeout)
            print(f"  #{mutant.index:3d} L{mutant.line:<4d} {mutant.kind:13s} {mutant.status:20s} "
                  f"{mutant.function}: {mutant.original[:70]}", flush=True)
    survivors = [m for m, _ in mutants if m.status == "survived"]
    print(f"{args.module}: {len(mutants) - len(survivors)} killed, {len(survivors)} survived")
    for m in survivors:
        print(f"  SURVIVOR L{m.line} {m.function} [{m.kind}] {m.original}  =>  {m.mutated}")
    if args.out:
        Path(args.out).write_text(json.dumps([asdict(m) for m, _ in mutants], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
