"""The verdict for each way an attempt can end, as the retry policy and Celery define it."""

from __future__ import annotations

from stalwart import Fail, Retry
from stalwart.errors import RetryRequested, TimeLimitExceeded
from stalwart.worker.outcomes import decide, succeeded

POLICY = Retry(max_retries=2, backoff=1.0, factor=2.0, jitter=False)


def test_success_is_complete_with_json_text():
    v = succeeded({"a": [1, 2.5, None]}, 60.0)
    assert (v.kind, v.result, v.result_ttl) == ("complete", '{"a":[1,2.5,null]}', 60.0)
    assert succeeded(None, None).result is None


def test_a_result_json_cannot_carry_buries_with_a_clear_reason():
    v = succeeded({"when": object()}, 60.0)
    assert v.kind == "bury" and v.reason == "exception"
    assert "cannot be stored" in v.message and "['when']" in v.message
    assert succeeded(float("nan"), 60.0).kind == "bury"


def test_fail_skips_retries():
    v = decide(Fail("bad input"), POLICY, 0)
    assert (v.kind, v.reason, v.exc_type) == ("bury", "fail", "stalwart.errors.Fail")


def test_exception_backs_off_then_exhausts():
    delays = [decide(OSError("x"), POLICY, n).delay for n in range(2)]
    assert delays == [1.0, 2.0]
    v = decide(OSError("x"), POLICY, 2)
    assert (v.kind, v.reason, v.exc_type) == ("bury", "retries-exhausted", "OSError")


def test_exception_outside_the_policy_is_final_at_once():
    v = decide(KeyError("k"), Retry(on=(OSError,)), 0)
    assert (v.kind, v.reason) == ("bury", "exception")


def test_per_call_max_retries_overrides_the_policy():
    assert decide(OSError(), POLICY, 1, max_retries=1).kind == "bury"
    assert decide(OSError(), POLICY, 4, max_retries=5).kind == "reschedule"


def test_retry_requested_uses_countdown_and_its_own_limit():
    v = decide(RetryRequested(countdown=15, exc=OSError("net")), POLICY, 0)
    assert (v.kind, v.delay, v.exc_type, v.message) == ("reschedule", 15, "OSError", "net")
    assert decide(RetryRequested(), POLICY, 1).delay == 2.0  # the policy's backoff
    v = decide(RetryRequested(max_retries=1, exc=OSError("net")), POLICY, 1)
    assert (v.kind, v.reason, v.exc_type) == ("bury", "retries-exhausted", "OSError")


def test_retry_requested_works_even_when_the_policy_covers_nothing():
    v = decide(RetryRequested(countdown=1), Retry(max_retries=3, on=()), 0)
    assert v.kind == "reschedule"


def test_time_limit_is_seen_by_the_policy():
    v = decide(TimeLimitExceeded("killed"), POLICY, 0)
    assert (v.kind, v.reason) == ("reschedule", "time-limit")
    v = decide(TimeLimitExceeded("killed"), Retry(on=(OSError,)), 0)
    assert (v.kind, v.reason) == ("bury", "time-limit")
