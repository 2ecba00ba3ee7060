"""Generate `docs/config-reference.md` from the config dataclasses' field docstrings.

    python -m vtc_lab.cli.docs_config            # rewrite docs/config-reference.md
    python -m vtc_lab.cli.docs_config --check    # exit 1 if the committed file is stale

The reference is built from the code (each app's `<app>_schema`, every nested config group, the
string literal under each field) and the preset files in `conf/`, so it cannot drift: a test
fails when the committed file differs from what this prints.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import inspect
import sys
import textwrap
from pathlib import Path
from typing import Any

from vtc_lab import atomic
from vtc_lab.cli._hydra import CONF_DIR

DEFAULT_OUTPUT = Path(__file__).resolve().parents[2] / "docs" / "config-reference.md"
NOT_APPS = {"common"}


def field_docs(cls: type) -> dict[str, str]:
    """{field: docstring} from the string literal right under each annotated field."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(inspect.cleandoc(nxt.value.value).split())
    return docs


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return "???"


def _fmt_default(value: Any) -> str:
    if dataclasses.is_dataclass(value):
        return "(group)"
    text = repr(value) if isinstance(value, str) else str(value)
    if value is None:
        text = "null"
    text = text.replace("\n", "\\n").replace("|", "\\|")
    return f"`{text[:57]}...`" if len(text) > 60 else f"`{text}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _nested(obj: Any) -> list[tuple[str, Any]]:
    return [(f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)
            if dataclasses.is_dataclass(getattr(obj, f.name))]


def _table(obj: Any) -> list[str]:
    cls = type(obj)
    docs = field_docs(cls)
    lines = ["| field | type | default | description |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        value = getattr(obj, f.name)
        ftype = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        lines.append(f"| `{f.name}` | `{_cell(str(ftype))}` | "
                     f"{'(see below)' if dataclasses.is_dataclass(value) else _fmt_default(value)}"
                     f" | {_cell(docs.get(f.name, ''))} |")
    return lines


def _preset_summary(text: str) -> tuple[str, str]:
    """(first sentence of the header comment, `apps:` line) of a preset file."""
    para, apps = [], ""
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        body = line[1:]
        if body.strip().startswith("@package"):
            continue
        if body.strip().startswith("apps:"):
            apps = body.strip()[5:].strip()
            continue
        if body.startswith("   ") or not body.strip():  # command examples end the summary
            if para:
                break
            continue
        para.append(body.strip())
    joined = " ".join(para)
    cut = joined.find(". ")
    summary = joined[: cut + 1] if 0 < cut else joined
    if len(summary) > 240:
        summary = summary[:240].rsplit(" ", 1)[0] + " …"
    return summary, apps


def _presets(group: str) -> list[str]:
    folder = Path(CONF_DIR) / group
    out = []
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        summary, apps = _preset_summary(path.read_text())
        out.append(f"- `{group}={path.stem}`" + (f" (apps: {apps})" if apps else "")
                   + (f": {summary}" if summary else ""))
    return out


def app_schemas() -> dict[str, Any]:
    """app name -> default instance of its top-level config (schema registered in Hydra)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    out = {}
    for path in sorted(Path(CONF_DIR).glob("*.yaml")):
        if path.stem in NOT_APPS:
            continue
        importlib.import_module(f"vtc_lab.cli.{path.stem}")
        node = ConfigStore.instance().repo[f"{path.stem}_schema.yaml"].node
        out[path.stem] = OmegaConf.get_type(node)()
    return out


def render() -> str:
    """The whole reference as Markdown."""
    apps = app_schemas()
    lines = ["# Configuration reference", "",
             "<!-- GENERATED by `python -m vtc_lab.cli.docs_config`; do not edit by hand. -->", "",
             "Every vtc-lab command is a Hydra app: a top-level dataclass (below) composed from "
             "config groups (`conf/<group>/*.yaml` presets of one dataclass each). Override any "
             "field on the command line (`trainer.lr=3e-4`), pick a preset (`model=tiny_glm4v`), "
             "or sweep (`-m renderer.font_size=7,9`). Defaults below are the dataclass defaults; "
             "each app's `conf/<app>.yaml` picks the presets it starts from.", "",
             "Apps: " + ", ".join(f"[`{a}`](#app-{a.replace('_', '-')})" for a in apps), ""]
    groups: dict[str, Any] = {}
    for app, obj in apps.items():
        lines += [f"## App `{app}`", "", f'<a id="app-{app.replace("_", "-")}"></a>', "",
                  f"`{type(obj).__module__}.{type(obj).__qualname__}` — "
                  f"`vtc-lab {app.replace('_', '-')} [overrides]`; primary config `conf/{app}.yaml`.",
                  ""]
        lines += _table(obj) + [""]
        for name, sub in _nested(obj):
            groups.setdefault(name, sub)
    lines += ["# Config groups", ""]
    for name in sorted(groups):
        stack = [(name, groups[name])]
        while stack:
            path, obj = stack.pop(0)
            cls = type(obj)
            lines += [f"## `{path}`", "", f"`{cls.__module__}.{cls.__qualname__}`"
                      + (f": {inspect.cleandoc(cls.__doc__).splitlines()[0]}"
                         if cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "(") else ""),
                      ""]
            lines += _table(obj) + [""]
            presets = _presets(path) if "." not in path else []
            if presets:
                lines += ["Presets:", ""] + presets + [""]
            stack += [(f"{path}.{n}", s) for n, s in _nested(obj)]
    extra = ["experiment", "hydra/launcher", "hydra/sweeper"]
    lines += ["# Other groups", ""]
    for group in extra:
        presets = _presets(group)
        if presets:
            lines += [f"## `{group}`", ""] + presets + [""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run `python -m vtc_lab.cli.docs_config`",
                  file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(args.output, text)
    print(f"wrote {args.output} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
