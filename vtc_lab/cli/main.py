"""The `vtc-lab` console script: one Hydra app per sub-command.

`vtc-lab train -m a=1,2` must be a real Hydra multirun of the `train` app, so this dispatcher
only picks the app module and hands it the rest of argv untouched.
"""

from __future__ import annotations

import importlib
import sys

# sub-command -> module with a Hydra `main()`; imported lazily so `vtc-lab render` never
# pays for importing torch.
COMMANDS: dict[str, tuple[str, str]] = {
    "render": ("vtc_lab.cli.render", "render text to page images and report compression"),
    "build-data": ("vtc_lab.cli.build_data", "segment + render traces into an SFT dataset"),
    "train": ("vtc_lab.cli.train", "Lightning SFT of a VLM on a built dataset"),
    "eval": ("vtc_lab.cli.eval", "run the optical / text / none loops on a benchmark"),
    "report": ("vtc_lab.cli.report", "compare MLflow runs: tables and plots"),
    "serve": ("vtc_lab.cli.serve", "OpenAI-compatible server over a local checkpoint"),
}


def _usage() -> str:
    lines = ["usage: vtc-lab <command> [hydra overrides...]", "", "commands:"]
    lines += [f"  {name:<12} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Each command is a Hydra app: `vtc-lab <command> --help` lists its config groups,",
              "`vtc-lab <command> -m key=a,b` runs a sweep."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return
    name = argv[0]
    if name not in COMMANDS:
        print(f"vtc-lab: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        raise SystemExit(2)
    module = importlib.import_module(COMMANDS[name][0])
    sys.argv = [f"vtc-lab-{name}", *argv[1:]]
    module.main()


if __name__ == "__main__":
    main()
