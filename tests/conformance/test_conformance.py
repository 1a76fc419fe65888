"""Every backend in the tree against the one contract (see stalwart.testing.conformance)."""

from stalwart.testing.conformance import *  # noqa: F403
