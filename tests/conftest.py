"""Shared fixtures: ``backend_kind``, ``backend_url``, ``clock``, ``backend`` and friends.

The logic lives in :mod:`stalwart.testing` so that a backend outside this repository can
run the same suite; see :mod:`stalwart.testing.conformance.fixtures`.
"""

from stalwart.testing.conformance.fixtures import (  # noqa: F401
    FakeClock,
    backend,
    backend_kind,
    backend_url,
    clock,
    open_peer,
    store,
)
from stalwart.testing.services import require  # noqa: F401
