"""The message envelope: its versioned JSON form, the size limit, and HMAC signing.

JSON only, never pickle. An argument JSON cannot carry is refused at enqueue with its
path named (``args[1]``, ``kwargs['when']``), before anything is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .backends.base import NewMessage
from .errors import (
    ArgumentNotSerializable,
    ConfigurationError,
    MessageTooLarge,
    SignatureError,
    UndecodableMessage,
)

FORMAT_VERSION = 1
DEFAULT_MAX_SIZE = 1024 * 1024  # bytes


@dataclass(slots=True)
class Message:
    """One task invocation, as the producer built it and the worker reads it."""

    id: str
    task: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str = "default"
    priority: int = 0
    eta: float | None = None
    max_retries: int | None = None  # None: the task's policy decides
    max_deliveries: int = 5
    time_limit: float | None = None
    soft_time_limit: float | None = None
    job_id: str | None = None
    idempotency_key: str | None = None
    created_at: float = 0.0
    headers: dict[str, Any] = field(default_factory=dict)
    retries: int = 0  # kept by the backend; filled in from the Delivery
    deliveries: int = 0

    def to_new_message(self, body: bytes) -> NewMessage:
        """The record a backend stores: indexable fields beside the opaque body."""
        return NewMessage(
            id=self.id, task=self.task, queue=self.queue, body=body, priority=self.priority,
            eta=self.eta, max_deliveries=self.max_deliveries, job_id=self.job_id,
            idempotency_key=self.idempotency_key, created_at=self.created_at,
        )


class Signer:
    """HMAC-SHA256 over the canonical body; the first key signs, any key verifies (rotation)."""

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        if not keys:
            raise ConfigurationError("signing needs at least one key; pass signing_keys=[...]")
        self._keys = [k.encode() if isinstance(k, str) else k for k in keys]

    def sign(self, payload: bytes) -> str:
        return hmac.new(self._keys[0], payload, hashlib.sha256).hexdigest()

    def verify(self, payload: bytes, signature: str) -> bool:
        return any(
            hmac.compare_digest(hmac.new(k, payload, hashlib.sha256).hexdigest(), signature)
            for k in self._keys
        )


def check_json(value: Any, path: str) -> None:
    """Raise ArgumentNotSerializable naming the first part of ``value`` JSON cannot carry."""
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ArgumentNotSerializable(
                f"{path} is {value!r}, which JSON cannot carry; pass None or a string instead"
            )
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_json(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ArgumentNotSerializable(
                    f"{path} has a key {key!r} of type {type(key).__name__}; JSON object keys "
                    "must be strings"
                )
            check_json(item, f"{path}[{key!r}]")
        return
    raise ArgumentNotSerializable(
        f"{path} is a {type(value).__module__}.{type(value).__qualname__}, which JSON cannot "
        "carry; pass plain data (an id, a string, a number, a list or dict of those) and load "
        "the object inside the task"
    )


_OPTION_FIELDS = ("priority", "max_retries", "max_deliveries", "time_limit", "soft_time_limit",
                  "idempotency_key", "eta")


def encode(msg: Message, *, max_size: int = DEFAULT_MAX_SIZE, signer: Signer | None = None) -> bytes:
    """The envelope as compact JSON bytes, signed when a signer is given, within ``max_size``."""
    for i, arg in enumerate(msg.args):
        check_json(arg, f"args[{i}]")
    for key, arg in msg.kwargs.items():
        check_json(arg, f"kwargs[{key!r}]")
    check_json(msg.headers, "headers")
    doc: dict[str, Any] = {
        "v": FORMAT_VERSION, "id": msg.id, "task": msg.task, "args": list(msg.args),
        "kwargs": msg.kwargs, "queue": msg.queue, "job_id": msg.job_id,
        "created_at": msg.created_at, "headers": msg.headers,
        "opts": {k: getattr(msg, k) for k in _OPTION_FIELDS if getattr(msg, k) is not None},
    }
    body = json.dumps(doc, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
    if signer is not None:
        doc["sig"] = signer.sign(body)
        body = json.dumps(doc, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
    if len(body) > max_size:
        raise MessageTooLarge(
            f"message for {msg.task} is {len(body):,} bytes, over the {max_size:,}-byte limit; "
            "store large payloads elsewhere (object store, database) and pass their key, "
            "or raise App(max_message_size=...)"
        )
    return body


def decode(body: bytes, *, signer: Signer | None = None) -> Message:
    """Read an envelope back; UndecodableMessage or SignatureError when it cannot be trusted."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UndecodableMessage(f"message body is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or "task" not in doc or "id" not in doc:
        raise UndecodableMessage("message body is not a stalwart envelope (no id or task)")
    if doc.get("v") != FORMAT_VERSION:
        raise UndecodableMessage(
            f"message format version {doc.get('v')!r} is not {FORMAT_VERSION}; "
            "upgrade the worker to the producer's stalwart version"
        )
    if signer is not None:
        sig = doc.pop("sig", None)
        if not isinstance(sig, str):
            raise SignatureError("message is unsigned but this App requires signed messages")
        payload = json.dumps(doc, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
        if not signer.verify(payload, sig):
            raise SignatureError("message signature matches none of the configured keys")
    try:
        opts = doc.get("opts") or {}
        return Message(
            id=str(doc["id"]), task=str(doc["task"]), args=list(doc.get("args") or []),
            kwargs=dict(doc.get("kwargs") or {}), queue=doc.get("queue") or "default",
            job_id=doc.get("job_id"), created_at=float(doc.get("created_at") or 0.0),
            headers=dict(doc.get("headers") or {}),
            **{k: opts[k] for k in _OPTION_FIELDS if k in opts},
        )
    except (TypeError, ValueError) as exc:
        raise UndecodableMessage(f"message envelope has a malformed field: {exc}") from exc
