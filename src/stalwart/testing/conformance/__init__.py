"""The backend conformance suite: one set of tests every backend must pass unchanged.

Import the test classes into a test module, and the fixtures into its ``conftest.py``;
point ``backend_url`` at the backend to check::

    # conftest.py
    from stalwart.testing.conformance.fixtures import *  # noqa: F403

    # test_conformance.py
    from stalwart.testing.conformance import *  # noqa: F403

Every test runs on a fresh store and a :class:`FakeClock`, and checks the conservation law
(``Counts.unaccounted == 0`` for every queue and job) after every write.
"""

from __future__ import annotations

from .bookkeeping import TestCancel, TestDeadLetters, TestJobs, TestListing, TestQueueStats
from .checks import CheckedBackend, assert_conserved, counts_problem
from .claim import TestBoundaries, TestClaim, TestEta
from .enqueue import TestEnqueue
from .fencing import TestExtendAndProgress, TestFencing
from .fixtures import FakeClock
from .lifecycle import TestAttempts, TestBury, TestExpiry, TestRelease, TestReschedule
from .processes import TestManyProcesses
from .registry import TestExchange, TestWait, TestWorkerRegistry
from .results import TestResults
from .surface import TestSurface
from .threads import TestThreads

__all__ = [
    "CheckedBackend",
    "FakeClock",
    "TestAttempts",
    "TestBoundaries",
    "TestBury",
    "TestCancel",
    "TestClaim",
    "TestDeadLetters",
    "TestEnqueue",
    "TestEta",
    "TestExpiry",
    "TestExtendAndProgress",
    "TestFencing",
    "TestJobs",
    "TestListing",
    "TestManyProcesses",
    "TestQueueStats",
    "TestRelease",
    "TestReschedule",
    "TestResults",
    "TestSurface",
    "TestThreads",
    "TestWait",
    "TestExchange",
    "TestWorkerRegistry",
    "assert_conserved",
    "counts_problem",
]
