"""Retry policy: backoff, caps, jitter bounds, and Celery's option names with Celery's meaning."""

import pytest

from stalwart import Fail, Retry
from stalwart.retry import backoff_delay, from_celery_options


def test_exponential_backoff_without_jitter_doubles_and_caps():
    policy = Retry(backoff=1.0, factor=2.0, max_delay=5.0, jitter=False)
    assert [policy.delay(n) for n in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_jitter_stays_within_half_and_full_delay():
    for attempt in range(6):
        full = min(600.0, 2.0 ** attempt)
        for _ in range(50):
            d = backoff_delay(attempt, 1.0, 2.0, 600.0, jitter=True)
            assert full / 2 <= d <= full


def test_policy_filters_exceptions_and_never_retries_fail():
    policy = Retry(on=(IOError,))
    assert policy.applies_to(OSError("x"))
    assert not policy.applies_to(ValueError("x"))
    assert not Retry().applies_to(Fail("stop"))


def test_retries_left_honours_the_per_call_override():
    policy = Retry(max_retries=3)
    assert policy.retries_left(2) and not policy.retries_left(3)
    assert policy.retries_left(5, max_retries=10)
    assert Retry(max_retries=None).retries_left(10_000)


def test_celery_names_mean_what_they_mean_in_celery():
    base = Retry()
    p = from_celery_options(base, {"autoretry_for": (IOError,), "retry_backoff": True,
                                   "retry_backoff_max": 30, "retry_jitter": False,
                                   "max_retries": 5})
    assert p.on == (IOError,) and p.max_retries == 5
    assert [p.delay(n) for n in range(6)] == [1, 2, 4, 8, 16, 30]
    constant = from_celery_options(base, {"autoretry_for": (KeyError,), "retry_jitter": False})
    assert constant.delay(0) == constant.delay(4) == 180  # default_retry_delay, as in Celery
    assert from_celery_options(base, {"retry_backoff": 5, "retry_jitter": False}).delay(1) == 10
    assert from_celery_options(base, {}) is base


@pytest.mark.parametrize("n", [0, 1, 10, 100])
def test_delay_is_never_negative_or_above_cap(n):
    assert 0 <= Retry(max_delay=7).delay(n) <= 7
