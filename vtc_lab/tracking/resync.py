"""`python -m vtc_lab.tracking.resync <spool dir>`: send what a job spooled during a tracking
outage and could not send before it ended (see `vtc_lab.tracking.outage`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

from vtc_lab.tracking.outage import pending_ops, flush
from vtc_lab.tracking.runs import RunHandle, _client


def resync(spool_dir: str | os.PathLike) -> int:
    """Send a spool left by a job that ended during an outage (the CLI below)."""
    ops = pending_ops(Path(spool_dir))
    if not ops:
        return 0
    run_id, uri = ops[0]["run_id"], ops[0]["uri"]
    handle = RunHandle(_client(uri), run_id, uri, experiment_id="")
    return flush(Path(spool_dir), handle.send_op)


def main(argv: Optional[list[str]] = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m vtc_lab.tracking.resync <spool dir>", file=sys.stderr)
        raise SystemExit(2)
    sent = resync(args[0])
    print(f"{sent} pending writes sent from {args[0]}")


if __name__ == "__main__":
    main()
