"""The process child: receive a job on its pipe, run it, send the verdict back. Nothing else.

A child never touches the backend and imports nothing new: it was forked from the
supervisor after the App was loaded. It ignores SIGINT and SIGTERM (the supervisor decides
when tasks stop) and dies with the supervisor (``PR_SET_PDEATHSIG`` on Linux; elsewhere
the closed pipe ends it after the current task).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Sequence
from multiprocessing.connection import Connection

from ..app import App
from .execute import run_job
from .jobs import Finished, ProgressReport, dump_event, load_job
from .timelimits import AlarmLimit

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def child_main(app: App, conn: Connection, parent_pid: int, inherited: Sequence[Connection]) -> None:
    """The child's whole life: one job at a time until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    for other in inherited:  # the parent's ends of its other children's pipes
        try:
            other.close()
        except OSError:
            pass
    while True:
        try:
            job = load_job(conn.recv_bytes())
        except (EOFError, OSError):
            os._exit(0)

        def report(done: float, total: float | None, note: str | None, _id: str = job.id) -> None:
            conn.send_bytes(dump_event(ProgressReport(_id, float(done),
                                                      None if total is None else float(total),
                                                      None if note is None else str(note))))

        verdict = run_job(app, job, report, AlarmLimit)
        try:
            conn.send_bytes(dump_event(Finished(job.id, verdict)))
        except (OSError, ValueError):
            os._exit(0)
