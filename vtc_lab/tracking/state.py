"""What a process remembers about its runs, in one object: `TrackingState`.

The runs it has open (marked KILLED at exit if still open, so a run is never left RUNNING by a
process that died), the run of the Hydra job it is running (the tracking callback opened it;
apps log into it), and the parent run of each sweep it launched. The process has one
(`STATE`); tests create their own to check that two never share anything.
"""

from __future__ import annotations

import atexit
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from vtc_lab.tracking.handle import RunHandle
    from vtc_lab.tracking.sweep import JobContext


class TrackingState:
    """Open runs, the job's run and the sweeps' parent runs of one process (or one test)."""

    def __init__(self) -> None:
        self.open_runs: dict[str, RunHandle] = {}
        """Runs opened and not yet ended, by run id."""
        self.job_run: Optional[RunHandle] = None
        """The run the Hydra callback opened for the job running now (one job at a time per
        process, under every launcher); None outside a Hydra job."""
        self.job_context: Optional[JobContext] = None
        """The job context that run was opened with (its swept values, overrides and tags),
        computed by the callback from the job's full config; None with no job run."""
        self.parents: dict[str, RunHandle] = {}
        """The parent run of each multirun sweep launched here, by sweep directory."""

    def opened(self, handle: RunHandle) -> None:
        self.open_runs[handle.run_id] = handle

    def closed(self, run_id: str) -> None:
        self.open_runs.pop(run_id, None)

    def kill_open_runs(self) -> None:
        """Mark every run still open KILLED (at process exit: Ctrl-C, sys.exit in a job)
        instead of leaving it RUNNING forever in the UI."""
        for handle in list(self.open_runs.values()):
            try:
                handle.set_status("KILLED")
            except Exception:  # noqa: BLE001 - exiting anyway; the next sweep marks dead runs
                pass
        self.open_runs.clear()


STATE = TrackingState()
"""This process's state: what the functions of `vtc_lab.tracking` use unless handed another."""
atexit.register(STATE.kill_open_runs)
