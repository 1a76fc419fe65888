"""Running one job: the bound-task context, the call itself (sync or ``async def``), the verdict.

Shared by every pool so that a task behaves the same in a process child, a thread or an
event loop; only how the soft time limit is delivered differs (``timelimits``).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

from ..app import App
from ..task import Request, Task, current_request
from .jobs import Job, Verdict
from .outcomes import decide, succeeded
from .timelimits import SoftGuard, awaitable_result, run_with_soft_limit

ProgressCallback = Callable[[float, float | None, str | None], None]


def _request(job: Job, report: ProgressCallback | None) -> Request:
    return Request(
        id=job.id, task=job.task, args=job.args, kwargs=job.kwargs, queue=job.queue,
        retries=job.retries, deliveries=job.deliveries, job_id=job.job_id, eta=job.eta,
        headers=job.headers, time_limit=job.time_limit, soft_time_limit=job.soft_time_limit,
        max_retries=job.max_retries, report_progress=report,
    )


def _call(task: Task[Any, Any], job: Job) -> Any:
    if task.options.bind:
        return task.fn(task, *job.args, **job.kwargs)
    return task.fn(*job.args, **job.kwargs)


def unknown_task(job: Job) -> Verdict:
    return Verdict("bury", reason="unknown-task", exc_type="stalwart.errors.UnknownTask",
                   message=f"no task named {job.task!r} is registered in this worker's App")


def is_async(app: App, job: Job) -> bool:
    task = app.tasks.get(job.task)
    return task is not None and inspect.iscoroutinefunction(task.fn)


def run_job(app: App, job: Job, report: ProgressCallback | None, soft: SoftGuard) -> Verdict:
    """Run ``job`` in this thread to its verdict; never raises for anything the task does."""
    started = time.monotonic()
    task = app.tasks.get(job.task)
    if task is None:
        return unknown_task(job)
    token = current_request.set(_request(job, report))
    try:
        if inspect.iscoroutinefunction(task.fn):
            result = awaitable_result(_call(task, job), job.soft_time_limit)
        else:
            with soft(job.soft_time_limit):
                result = _call(task, job)
            if inspect.isawaitable(result):
                result = awaitable_result(result, job.soft_time_limit)
    except BaseException as exc:  # the task's own failure, whatever it is, is its verdict
        verdict = decide(exc, task.options.retry, job.retries, job.max_retries)
    else:
        verdict = succeeded(result, task.options.result_ttl)
    finally:
        current_request.reset(token)
    verdict.duration = time.monotonic() - started
    return verdict


async def run_job_async(app: App, job: Job, report: ProgressCallback | None) -> Verdict:
    """Run an ``async def`` job on the running loop (the async pool)."""
    started = time.monotonic()
    task = app.tasks.get(job.task)
    if task is None:
        return unknown_task(job)
    current_request.set(_request(job, report))  # this asyncio task's own context copy
    try:
        result = await run_with_soft_limit(_call(task, job), job.soft_time_limit)
    except Exception as exc:
        verdict = decide(exc, task.options.retry, job.retries, job.max_retries)
    else:
        verdict = succeeded(result, task.options.result_ttl)
    verdict.duration = time.monotonic() - started
    return verdict
