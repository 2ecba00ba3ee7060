"""What `vtc-lab` says about itself without starting an app: the short `--help` of a command
and the shell's tab completion of commands, config groups and their options.

Both read the app's YAML in conf/ (its header comment and its defaults list) and the group
folders, with PyYAML only, so they answer in a fraction of a second: Hydra's own `--help`
prints the whole composed config (hundreds of lines; still there as `--cfg job`), and a
completion that composed configs would make every <TAB> wait for Hydra.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from vtc_lab.cli._hydra import CONF_DIR

#: A bash completion for `vtc-lab`: `source <(vtc-lab --completion bash)` (or put the output
#: in ~/.local/share/bash-completion/completions/vtc-lab). Bash splits words at `=`, so the
#: line up to the cursor is sent whole and the candidates are cut back to what follows the `=`.
BASH_COMPLETION = r"""# bash completion for vtc-lab (vtc-lab --completion bash)
_vtc_lab() {
    local line="${COMP_LINE:0:COMP_POINT}"
    local cur="${line##*[[:space:]]}"
    local IFS=$'\n'
    COMPREPLY=($("${COMP_WORDS[0]}" --complete "$line" 2>/dev/null))
    if [[ $cur == *=* ]]; then
        COMPREPLY=("${COMPREPLY[@]#*=}")
    fi
    if [[ ${#COMPREPLY[@]} -gt 0 && ${COMPREPLY[0]} == *= ]]; then
        compopt -o nospace 2>/dev/null
    fi
}
complete -F _vtc_lab vtc-lab
"""

FLAGS = ("--help", "--cfg", "-m", "--multirun")


def _conf() -> Path:
    return Path(CONF_DIR)


@lru_cache(maxsize=None)
def _app_yaml(app: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(header comment lines, [(group, default option)]) of conf/<app>.yaml."""
    import yaml

    path = _conf() / f"{app}.yaml"
    text = path.read_text(encoding="utf-8")
    header = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        header.append(line[1:].strip() if not line.startswith("#   ") else line[1:].rstrip())
    groups: list[tuple[str, str]] = []
    for entry in (yaml.safe_load(text) or {}).get("defaults", []):
        if not isinstance(entry, dict):
            continue
        for key, value in entry.items():
            name = str(key).replace("override ", "").replace("optional ", "").strip().lstrip("/")
            if name.startswith("hydra/") or not (_conf() / name).is_dir():
                continue
            groups.append((name, "" if value is None else str(value)))
    return header, groups


def group_options(group: str) -> list[str]:
    """The presets of a config group: the YAML files of conf/<group>/."""
    folder = _conf() / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def short_help(command: str, app: str, summary: str) -> str:
    """`vtc-lab <command> --help`: what it does, its config groups with their presets, three
    examples, and where the full config is."""
    header, groups = _app_yaml(app)
    examples = [line.strip() for line in header  # the indented command lines of the header
                if line.startswith("  ") and line.strip().startswith(f"vtc-lab {command}")
                and not line.endswith("\\")]
    width = max((len(g) for g, _ in groups), default=0)
    lines = [f"vtc-lab {command}: {summary}", "",
             f"usage: vtc-lab {command} [group=preset ...] [key=value ...] [-m for a sweep]", ""]
    if groups:
        lines.append("config groups (the default first; `group=preset` picks one):")
        for group, default in groups:
            options = [o for o in group_options(group) if o != default]
            shown = ([default] if default and default != "null" else []) + options
            text = " ".join(shown[:8]) + (f" ... ({len(shown)})" if len(shown) > 8 else "")
            lines.append(f"  {group:<{width}}  {text}")
        lines.append("")
    if examples:
        lines.append("examples:")
        lines += [f"  {e}" for e in examples[:3]]
        lines.append("")
    lines += [f"the full config with every key and its value: vtc-lab {command} --cfg job",
              "Hydra's own flags: --hydra-help; config reference: docs/config-reference.md"]
    return "\n".join(lines)


def complete(line: str, commands: dict[str, str]) -> list[str]:
    """Candidates for the last word of `line` (the command line up to the cursor): a command
    after `vtc-lab`, then `group=` and flags, and after `group=` that group's presets.
    `commands` maps each command to its app's module path (`vtc_lab.cli.main.COMMANDS`'s
    first field), passed in so this module does not import the dispatcher that imports it."""
    words = line.split()
    cur = "" if not line or line[-1].isspace() else words.pop()
    if len(words) <= 1:
        return [c for c in [*commands, "--help", "--version", "--completion"]
                if c.startswith(cur)]
    command = words[1]
    if command not in commands:
        return []
    app = commands[command].rsplit(".", 1)[-1]
    _, groups = _app_yaml(app)
    names = [g for g, _ in groups]
    if "=" in cur:
        key, _, prefix = cur.partition("=")
        group = key.lstrip("+~")
        if group not in names:
            return []
        return [f"{key}={o}" for o in group_options(group) if o.startswith(prefix)]
    found = [f"{g}=" for g in names if g.startswith(cur)]
    return found + [f for f in FLAGS if cur and f.startswith(cur)]
