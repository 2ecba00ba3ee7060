"""What the package declares it runs on, and the pinned CPU install of the README and CI.

pyproject.toml declares ranges (Python 3.11-3.13, torch 2.11-2.14) so a GPU image keeps its own
CUDA torch; the README's two install commands and .ci/run pin the CPU build through one
constraints file. These tests keep the declarations, the pins and the commands in agreement,
check the running interpreter and torch against the ranges, and check what can be checked of
the newer Pythons here: every module compiles under them and imports no standard-library
module they dropped.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = "constraints-cpu.txt"


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirements() -> dict[str, Requirement]:
    reqs = [Requirement(r) for r in _pyproject()["project"]["dependencies"]]
    return {r.name.lower(): r for r in reqs}


def _constraints() -> dict[str, Requirement]:
    lines = (ROOT / CONSTRAINTS).read_text().splitlines()
    reqs = [Requirement(line.split("#")[0]) for line in lines if line.split("#")[0].strip()]
    return {r.name.lower(): r for r in reqs}


def test_declared_ranges() -> None:
    python = SpecifierSet(_pyproject()["project"]["requires-python"])
    assert [v for v in ("3.10", "3.11", "3.12", "3.13", "3.14") if v in python] == ["3.11", "3.12", "3.13"]
    torch = _requirements()["torch"].specifier
    assert [v for v in ("2.10.0", "2.11.0", "2.12.1", "2.13.0", "2.14.1", "2.15.0") if v in torch] == [
        "2.11.0", "2.12.1", "2.13.0", "2.14.1"]


def test_constraints_pin_exact_versions_inside_the_declared_ranges() -> None:
    declared, pinned = _requirements(), _constraints()
    assert "torch" in pinned
    for name, req in pinned.items():
        [spec] = list(req.specifier)
        assert spec.operator == "==", f"{CONSTRAINTS}: {req} is not an exact pin"
        assert name in declared, f"{CONSTRAINTS} pins {name}, which pyproject.toml does not require"
        assert declared[name].specifier.contains(spec.version, prereleases=True), (
            f"{CONSTRAINTS} pins {req}, outside pyproject.toml's {declared[name]}")


def test_this_environment_is_inside_the_declared_ranges() -> None:
    """The lower bound of Python (3.11) is what CI runs; torch is whatever the pin installed."""
    assert Version(f"{sys.version_info.major}.{sys.version_info.minor}") in SpecifierSet(
        _pyproject()["project"]["requires-python"])
    installed = Version(version("torch"))
    assert _requirements()["torch"].specifier.contains(installed.public)


def test_readme_and_ci_install_through_the_same_constraints_file() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    installs = re.findall(r"^python3\.11 -m venv .*$", readme, flags=re.M)
    assert len(installs) == 2, installs
    assert all(f"pip install -c {CONSTRAINTS} -e " in c or f"pip install -q -c {CONSTRAINTS} -e " in c
               for c in installs), installs
    test_cmd = next(c for c in installs if "pytest" in c)
    assert test_cmd in ci, ".ci/run must run exactly the README's test command"


def _pyenv(minor: str) -> Path | None:
    found = sorted(Path("/root/.pyenv/versions").glob(f"3.{minor}.*/bin/python3"))
    return found[-1] if found else None


@pytest.mark.parametrize("minor", ["12", "13"])
def test_sources_compile_and_keep_their_stdlib_imports_on_newer_pythons(minor: str) -> None:
    """Syntax, and no import of a standard-library module that Python 3.12/3.13 removed
    (imp, distutils, cgi, imghdr, ...): what a newer interpreter can check without the
    dependencies (this machine has their wheels for 3.11 only)."""
    python = _pyenv(minor)
    if python is None:
        pytest.skip(f"no Python 3.{minor} interpreter here")
    script = r"""
import ast, pathlib, sys
stdlib_311 = set(sys.argv[2].split(","))
bad = []
for f in sorted(pathlib.Path(sys.argv[1]).rglob("*.py")):
    tree = compile(f.read_text(encoding="utf-8"), str(f), "exec", ast.PyCF_ONLY_AST)
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
        for n in names:
            top = n.split(".")[0]
            if top in stdlib_311 and top not in sys.stdlib_module_names:
                bad.append(f"{f}: {n}")
print("\n".join(bad))
sys.exit(1 if bad else 0)
"""
    proc = subprocess.run([str(python), "-c", script, str(ROOT / "vtc_lab"),
                           ",".join(sorted(sys.stdlib_module_names))],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_source_package_is_in_the_wheel() -> None:
    """`packages` is an explicit list: a sub-package missing from it (vtc_lab/models/archs, the
    backbone registry's families) would install as an empty registry."""
    declared = set(_pyproject()["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "vtc_lab").rglob("__init__.py")
               if "conf" not in p.relative_to(ROOT / "vtc_lab").parts[:1]}
    assert on_disk - declared == set()


def test_client_requirements_repeat_the_declared_pins() -> None:
    """requirements-client.txt (the torch-free `engine=openai` install, docs/engines.md) lists
    packages the pyproject declares, each with the pyproject's own specifier, and no torch."""
    project = _pyproject()["project"]
    declared = {}
    for line in project["dependencies"] + [d for ds in project["optional-dependencies"].values()
                                           for d in ds]:
        req = Requirement(line)
        if not req.name.startswith("vtc-lab"):
            declared[req.name.lower()] = req.specifier
    lines = (ROOT / "requirements-client.txt").read_text().splitlines()
    client = [Requirement(x.split("#")[0]) for x in lines if x.split("#")[0].strip()]
    assert client, "requirements-client.txt lists nothing"
    for req in client:
        assert req.name.lower() in declared, f"{req.name} is not declared in pyproject.toml"
        assert req.specifier == declared[req.name.lower()], req.name
    assert not {r.name.lower() for r in client} & {"torch", "transformers", "lightning"}
