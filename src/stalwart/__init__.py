"""stalwart: background tasks for Python that are never lost.

Every accepted message ends in exactly one final state (succeeded, dead, cancelled); a
worker that dies loses its lease and the message is delivered again; a worker whose lease
expired cannot complete it any more. See the README for the two-minute tour.
"""

from .app import App
from .backends.base import Backend
from .errors import (
    ArgumentNotSerializable,
    BrokerUnavailable,
    ConfigurationError,
    Fail,
    MessageTooLarge,
    ResultExpired,
    ResultTimeout,
    SoftTimeLimitExceeded,
    StalwartError,
    TaskCancelled,
    TaskError,
    TimeLimitExceeded,
    UnknownTask,
    WorkerLost,
)
from .net import ConnectionSettings, django_redis_options
from .results import JobHandle, TaskHandle
from .retry import Retry
from .states import JobState, State
from .task import Request, Signature, Task

__all__ = [
    # building an application
    "App", "Task", "Signature", "Retry", "ConnectionSettings", "django_redis_options",
    # inside a task
    "Fail", "SoftTimeLimitExceeded", "Request",
    # results
    "TaskHandle", "JobHandle", "State", "JobState",
    # errors
    "StalwartError", "ConfigurationError", "ArgumentNotSerializable", "MessageTooLarge",
    "UnknownTask", "BrokerUnavailable", "TaskError", "TaskCancelled", "ResultTimeout",
    "ResultExpired", "TimeLimitExceeded", "WorkerLost",
    # extending
    "Backend",
]
__version__ = "0.1.0"
