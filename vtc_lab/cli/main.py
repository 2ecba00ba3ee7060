"""The `vtc-lab` console script: one Hydra app per sub-command.

`vtc-lab train -m a=1,2` must be a real Hydra multirun of the `train` app, so this dispatcher
only picks the app module and hands it the rest of argv untouched.

It is also where a failed command is reported: a user-facing error (a bad config value or key,
a missing or corrupt file, an unreachable store, a locked output...) prints one message that
names the problem and the fix, without a Python traceback; `VTC_LAB_DEBUG=1` shows the
traceback (Hydra's full one). Anything else is a bug and keeps its traceback. (Hydra prints its
own trimmed traceback for job errors unless `HYDRA_FULL_ERROR` is set, so it is set here and the
exception reaches this function.)
"""

from __future__ import annotations

import errno
import importlib
import os
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
              "`vtc-lab <command> -m key=a,b` runs a sweep.",
              "`vtc-lab --version`; tab completion: source <(vtc-lab --completion bash)"]
    return "\n".join(lines)


# exception types whose message is written for the user (the rest are bugs: keep the traceback)
_USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
    PermissionError, TimeoutError, ImportError)


# OSErrors about the machine rather than the code: a read-only or full disk, a quota, a
# file-size limit, a path through a file. Shown as one line naming the path and the reason.
_DISK_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM,
                errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENOENT, errno.ENAMETOOLONG}
_DISK_HINTS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
               errno.EFBIG: "a file-size limit was reached",
               errno.EROFS: "choose a writable location"}


def debug_enabled() -> bool:
    """`VTC_LAB_DEBUG=1` (or Hydra's own `HYDRA_FULL_ERROR=1`): show tracebacks."""
    return (os.environ.get("VTC_LAB_DEBUG", "") not in ("", "0", "false")
            or os.environ.get("HYDRA_FULL_ERROR") == "1")


def user_facing(exc: BaseException) -> bool:
    """An error with a message meant for the user: ours (raised by vtc_lab with a message that
    names the fix), Hydra's and OmegaConf's config errors, and the usual bad-input types."""
    module = type(exc).__module__ or ""
    if module.startswith(("vtc_lab", "hydra", "omegaconf")):
        return True
    if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
        return True
    return isinstance(exc, _USER_ERRORS)


def _message(exc: BaseException) -> str:
    """The one-line text of a user-facing error: an OSError as `<path>: <reason> (<hint>)`."""
    if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS and exc.strerror:
        where = f"{exc.filename}: " if exc.filename is not None else ""
        hint = _DISK_HINTS.get(exc.errno)
        return f"cannot write {where}{exc.strerror} ({hint})" if hint else \
            f"{where}{exc.strerror}"
    return str(exc).strip() or type(exc).__name__


def _exit_code(exc: BaseException) -> int:
    from vtc_lab.configcheck import ConfigError

    module = type(exc).__module__ or ""
    return 2 if isinstance(exc, ConfigError) or module.startswith(("hydra", "omegaconf")) else 1


def _quoting_hint(exc: BaseException) -> str:
    """For an override Hydra's grammar cannot parse (`renderer.text_color=#FFFFFF`: `#` and
    other special characters are not allowed unquoted), the same override quoted, as typed."""
    if type(exc).__name__ != "OverrideParseException":
        return ""
    text = str(exc).split(": ", 1)[-1].splitlines()[0].strip()
    key, sep, value = text.partition("=")
    if not sep or not value or value[0] in "'\"[{":
        return ""
    quoted = value.replace("\\", "\\\\").replace('"', '\\"')
    return (f"\nhint: quote a value with special characters for Hydra, and the whole override "
            f"for the shell: '{key}=\"{quoted}\"'")


def run_command(name: str, module_name: str) -> None:
    """Run one app's Hydra `main()`, reporting a user-facing error as one message."""
    debug = debug_enabled()
    os.environ["HYDRA_FULL_ERROR"] = "1"  # the exception reaches us, not Hydra's printer
    module = importlib.import_module(module_name)
    try:
        module.main()
    except Exception as exc:  # noqa: BLE001 - classified below; bugs are re-raised
        if debug or not user_facing(exc):
            raise
        message = _message(exc)
        cause = exc.__cause__
        if (type(exc).__module__ or "").startswith("hydra") and cause is not None and str(cause):
            message += f"\n{str(cause).strip()}"
        message += _quoting_hint(exc)
        print(f"vtc-lab {name}: error: {message}\n(set VTC_LAB_DEBUG=1 to see the traceback)",
              file=sys.stderr)
        raise SystemExit(_exit_code(exc)) from None


def _own_flags(argv: list[str]) -> bool:
    """`--version`, `--completion bash`, `--complete <line>` (what the completion calls) and a
    command's short `--help`: answered here, without starting an app. True when handled."""
    from vtc_lab.cli import help as cli_help

    if argv[0] == "--version":
        from vtc_lab import __version__

        print(f"vtc-lab {__version__}")
        return True
    if argv[0] == "--completion":
        if argv[1:] != ["bash"]:
            print("usage: vtc-lab --completion bash   (then: source <(vtc-lab --completion bash))",
                  file=sys.stderr)
            raise SystemExit(2)
        print(cli_help.BASH_COMPLETION, end="")
        return True
    if argv[0] == "--complete":
        print("\n".join(cli_help.complete(argv[1] if len(argv) > 1 else "",
                                         {c: m for c, (m, _) in COMMANDS.items()})))
        return True
    if argv[0] in COMMANDS and any(a in ("-h", "--help") for a in argv[1:]):
        module, summary = COMMANDS[argv[0]]
        print(cli_help.short_help(argv[0], module.rsplit(".", 1)[-1], summary))
        return True
    return False


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return
    if _own_flags(argv):
        return
    name = argv[0]
    if name not in COMMANDS:
        print(f"vtc-lab: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        raise SystemExit(2)
    sys.argv = [f"vtc-lab-{name}", *argv[1:]]
    run_command(name, COMMANDS[name][0])


if __name__ == "__main__":
    main()
