"""`python -m vtc_lab.tracking.resync <spool dir>`: send what a job spooled during a tracking
outage and could not send before it ended (see `vtc_lab.tracking.outage`).

What it guarantees (docs/reliability.md): no write is dropped. Everything readable is sent in
order; a line that cannot be read or a write the store rejects is kept verbatim in
`quarantine.jsonl` beside the pending file, named with its line number, and the exit status is
1; the spool directory is deleted only when everything in it arrived. A store that does not
answer costs seconds (bounded requests, one probe first), leaves the spool untouched and ends
in one line, exit 1. A path that holds no spool is refused, exit 2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional

from vtc_lab.tracking.outage import (PENDING, QUARANTINE, Flushed, SpoolError,
                                     bound_http_requests, flush, is_outage, pending_ops,
                                     store_answers)
from vtc_lab.tracking.handle import RunHandle, client_for
from vtc_lab.tracking.store import sqlite_path

USAGE = "usage: python -m vtc_lab.tracking.resync <spool dir>"


class ResyncError(RuntimeError):
    """Nothing (more) could be sent; the message says why and what is kept where."""


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _check_store(uri: str, run_ids: set[str], waiting: int, spool: Path) -> None:
    """Refuse early (nothing sent, nothing changed) when the store is down or is not the one
    holding these runs: otherwise every write would be tried, or quarantined, in vain."""
    down = f"{waiting} writes are kept in {spool}; run this command again when it answers"
    db = sqlite_path(uri)
    if db is not None and not db.is_file():  # MLflow would create an empty store there
        raise ResyncError(f"the MLflow store {uri} does not exist (no file {db}); {waiting} "
                          f"writes are kept in {spool}")
    if not store_answers(uri):
        raise ResyncError(f"the MLflow store {uri} does not answer; {down}")
    client = client_for(uri)
    for run_id in sorted(run_ids):
        try:
            client.get_run(run_id)
        except Exception as exc:  # noqa: BLE001 - classified here, nothing else raised
            if is_outage(exc):
                raise ResyncError(f"the MLflow store {uri} does not answer ({_reason(exc)}); "
                                  f"{down}") from None
            raise ResyncError(f"run {run_id} is not in the MLflow store {uri} "
                              f"({_reason(exc)}); nothing was sent, {waiting} writes are kept "
                              f"in {spool}") from None


def _spool_dir(path: str | os.PathLike) -> Path:
    """The spool directory of `path` (the directory itself, or its pending file)."""
    spool = Path(path)
    return spool.parent if spool.name == PENDING and spool.is_file() else spool


def resync(spool_dir: str | os.PathLike) -> Flushed:
    """Send a spool left by a job that ended during an outage (the CLI below). Raises
    `FileNotFoundError` for a path without a spool, `SpoolError` for a file that is not one,
    `ResyncError` when the store is down (the spool then unchanged)."""
    spool = _spool_dir(spool_dir)
    if not (spool / PENDING).is_file():
        if (spool / QUARANTINE).is_file():
            raise ResyncError(f"nothing pending in {spool}; the writes in {spool / QUARANTINE} "
                              f"could not be sent earlier (fix them and rename the file to "
                              f"{PENDING} to try again)")
        raise FileNotFoundError(f"no tracking spool at {spool} (expected the directory a job "
                                f"named, holding {PENDING})")
    ops = pending_ops(spool)  # SpoolError comes from flush below, before anything is sent
    bound_http_requests()
    by_uri: dict[str, set[str]] = {}
    for op in ops:
        by_uri.setdefault(op["uri"], set()).add(op["run_id"])
    for uri, run_ids in by_uri.items():
        _check_store(uri, run_ids, len(ops), spool)
    handles: dict[tuple[str, str], RunHandle] = {}

    def send(op: dict) -> None:
        key = (op["uri"], op["run_id"])
        if key not in handles:
            handles[key] = RunHandle(client_for(key[0]), key[1], key[0], experiment_id="")
        handles[key].send_op(op)

    try:
        return flush(spool, send)
    except SpoolError:
        raise
    except Exception as exc:  # noqa: BLE001 - flush raises only an outage
        left = len(pending_ops(spool))
        raise ResyncError(f"the MLflow store stopped answering ({_reason(exc)}); {left} writes "
                          f"are kept in {spool}; run this command again when it answers") from None


def main(argv: Optional[list[str]] = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in {"-h", "--help"}:
        print(USAGE, file=sys.stderr if len(args) != 1 else sys.stdout)
        raise SystemExit(2 if len(args) != 1 else 0)
    try:
        done = resync(args[0])
    except FileNotFoundError as exc:
        _fail(str(exc), 2)
    except (SpoolError, ResyncError, OSError) as exc:
        _fail(str(exc), 1)
    print(f"{done.sent} pending writes sent from {args[0]}")
    if done.quarantined:
        quarantine = _spool_dir(args[0]) / QUARANTINE
        for number, why in done.quarantined:
            print(f"resync: line {number} of {PENDING}: {why}", file=sys.stderr)
        _fail(f"{len(done.quarantined)} writes could not be sent and are kept in {quarantine} "
              f"(fix them and rename the file to {PENDING} to try again)", 1)


def _fail(message: str, code: int) -> Any:
    print(f"resync: error: {message}", file=sys.stderr)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
