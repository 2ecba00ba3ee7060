"""Runs left RUNNING by a process that died (kill -9, OOM, a killed sweep) are marked KILLED.

A process that is killed outright cannot end its own MLflow run, so the UI would show it
RUNNING forever. Every run therefore carries the identity of the process that opened it
(`vtc.host`, `vtc.pid`, and the process's start time and the host's boot id, so a reused pid or
a reboot is not mistaken for the same process). The next sweep (the Hydra callback) and
`vtc-lab report` call `mark_dead_runs`: a RUNNING run opened on this host by a process that no
longer exists is set to KILLED with a `vtc.ended_by` tag saying who noticed. Runs opened on other
hosts are left alone (their processes cannot be checked from here).
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any, Iterable, Optional

log = logging.getLogger(__name__)

HOST, PID, START = "vtc.host", "vtc.pid", "vtc.proc_start"


def _proc_start(pid: int) -> Optional[str]:
    """`<boot id>:<start time in clock ticks>` of a live process on Linux, else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    # field 22 (starttime), counted after the parenthesised command name, which may hold spaces
    fields = stat[stat.rindex(")") + 2:].split()
    return f"{boot}:{fields[19]}"


def process_tags() -> dict[str, str]:
    """Tags identifying the process that opens a run."""
    tags = {HOST: socket.gethostname(), PID: str(os.getpid())}
    start = _proc_start(os.getpid())
    if start:
        tags[START] = start
    return tags


def process_gone(tags: dict[str, str]) -> bool:
    """True when the run's process certainly no longer exists (same host only)."""
    if tags.get(HOST) != socket.gethostname() or not tags.get(PID, "").isdigit():
        return False
    pid = int(tags[PID])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    recorded = tags.get(START)
    return bool(recorded) and _proc_start(pid) not in (None, recorded)


def mark_dead_runs(client: Any, experiment_ids: Iterable[str], noticed_by: str) -> list[str]:
    """Set RUNNING runs of dead local processes to KILLED; returns their ids."""
    ids = [str(e) for e in experiment_ids]
    if not ids:
        return []
    marked = []
    runs = client.search_runs(ids, filter_string="attributes.status = 'RUNNING'", max_results=1000)
    for run in runs:
        if process_gone(run.data.tags):
            client.set_tag(run.info.run_id, "vtc.ended_by",
                           f"{noticed_by}: process {run.data.tags[PID]} on "
                           f"{run.data.tags[HOST]} is gone")
            client.set_terminated(run.info.run_id, "KILLED")
            marked.append(run.info.run_id)
    if marked:
        log.warning("marked %d runs KILLED whose processes are gone: %s", len(marked), marked)
    return marked
