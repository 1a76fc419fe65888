"""The public API on the in-memory model: enqueue, options, handles, jobs, results."""

import datetime as dt
import json
import logging

import pytest

from stalwart import (
    App,
    ConfigurationError,
    Retry,
    State,
    TaskCancelled,
    TaskError,
    UnknownTask,
)
from stalwart.backends.base import ErrorInfo
from stalwart.message import decode


@pytest.fixture
def app():
    return App("shop", broker="memory://")


def test_default_broker_is_the_embedded_sqlite_file(monkeypatch):
    monkeypatch.delenv("STALWART_BROKER", raising=False)
    assert App("x").broker_url == "sqlite:///stalwart.db"
    monkeypatch.setenv("STALWART_BROKER", "redis://127.0.0.1:6379/0")
    assert App("x").broker_url == "redis://127.0.0.1:6379/0"


def test_delay_stores_a_decodable_message_with_the_task_options(app):
    @app.task(queue="images", priority=3, time_limit=600, soft_time_limit=540)
    def resize(image_id: int) -> dict:
        return {"id": image_id}

    h = resize.delay(42)
    info = app.backend.message(h.id)
    assert info is not None and info.state == State.QUEUED and info.queue == "images"
    msg = decode(info.body)
    assert (msg.task, msg.args, msg.time_limit, msg.soft_time_limit) == (
        resize.name, [42], 600, 540)
    assert resize(5) == {"id": 5}  # still callable as a plain function


def test_apply_async_options_override_and_countdown_schedules(app):
    @app.task
    def work(x):
        return x

    h = work.apply_async(args=(1,), countdown=60, queue="bulk", priority=7,
                         idempotency_key="k-1")
    info = app.backend.message(h.id)
    assert (info.queue, info.priority, info.state) == ("bulk", 7, State.SCHEDULED)
    again = work.apply_async(args=(1,), idempotency_key="k-1")
    assert again.id == h.id  # the key returns the existing message


def test_eta_must_be_aware(app):
    @app.task
    def work():
        pass

    with pytest.raises(ConfigurationError, match="naive"):
        work.apply_async(eta=dt.datetime(2030, 1, 1))
    h = work.apply_async(eta=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    assert app.backend.message(h.id).eta == dt.datetime(2030, 1, 1, tzinfo=dt.UTC).timestamp()


def test_unknown_task_options_are_refused_with_the_known_list(app):
    with pytest.raises(ConfigurationError, match="unknown task option"):
        app.task(retries=3)(lambda: None)
    with pytest.raises(UnknownTask, match="import the module"):
        app.get_task("nope")


def test_celery_acks_late_names_keep_celery_meaning(app):
    early = app.task(name="early", acks_late=False)(lambda: None)
    late_only = app.task(name="late", acks_late=True)(lambda: None)
    redeliver = app.task(name="both", acks_late=True, reject_on_worker_lost=True)(lambda: None)
    plain = app.task(name="plain")(lambda: None)
    assert early.options.max_deliveries == 1 and late_only.options.max_deliveries == 1
    assert redeliver.options.max_deliveries == 5 and plain.options.max_deliveries == 5


def test_job_counts_its_members_and_result_reports_outcomes(app):
    @app.task
    def work(x):
        return x

    job = app.job("import", [work.s(i) for i in range(4)])
    assert job.progress().counts.accepted == 4 and job.progress().state == "running"
    b = app.backend
    d = {x.lease.message_id: x for x in b.claim(["default"], 10, 30, "w")}
    b.complete(d[job.ids[0]].lease, json.dumps({"ok": 1}))
    b.fail(d[job.ids[1]].lease, ErrorInfo("exception", "ValueError", "bad", "Traceback..."))
    b.release(d[job.ids[2]].lease)
    b.release(d[job.ids[3]].lease)
    assert b.cancel([job.ids[2]]) == [job.ids[2]]
    assert job.tasks()[0].result(timeout=1) == {"ok": 1}
    with pytest.raises(TaskError) as err:
        job.tasks()[1].result(timeout=1)
    assert err.value.exc_type == "ValueError" and "Traceback" in str(err.value)
    with pytest.raises(TaskCancelled):
        job.tasks()[2].result(timeout=1)
    counts = job.progress().counts
    assert (counts.succeeded, counts.dead, counts.cancelled, counts.queued) == (1, 1, 1, 1)
    assert counts.unaccounted == 0


def test_result_timeout_is_a_timeout_error(app):
    @app.task
    def work():
        pass

    with pytest.raises(TimeoutError):
        work.delay().result(timeout=0.05)


def test_enqueue_to_a_queue_nobody_consumes_warns_once(app, caplog):
    @app.task(queue="orphan")
    def work():
        pass

    with caplog.at_level(logging.WARNING, logger="stalwart"):
        work.delay()
        work.delay()
    warnings = [r for r in caplog.records if "no live worker" in r.getMessage()]
    assert len(warnings) == 1 and "orphan" in warnings[0].getMessage()


def test_app_retry_policy_is_the_default_for_tasks(app):
    custom = App("x", broker="memory://", retry=Retry(max_retries=9))
    assert custom.task(lambda: None).options.retry.max_retries == 9
    assert app.task(retry=Retry(max_retries=1))(lambda: None).options.retry.max_retries == 1
