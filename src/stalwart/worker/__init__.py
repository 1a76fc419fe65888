"""The worker runtime: a supervisor that claims and settles, pools that run task code.

``Supervisor(app, queues, ...).run()`` is what ``stalwart worker`` runs.
"""

from .supervisor import Supervisor

__all__ = ["Supervisor"]
