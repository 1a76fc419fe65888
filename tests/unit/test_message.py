"""The envelope: JSON only, the size limit, signing, and clear errors for what cannot travel."""

import datetime as dt
import json

import pytest

from stalwart.errors import (
    ArgumentNotSerializable,
    MessageTooLarge,
    SignatureError,
    UndecodableMessage,
)
from stalwart.message import Message, Signer, decode, encode


def make(**kw):
    return Message(id="01ABC", task="shop.resize", **kw)


def test_round_trip_keeps_every_field():
    msg = make(args=[1, "x", [2.5]], kwargs={"k": {"n": None}}, queue="images", priority=7,
               eta=123.5, max_retries=2, max_deliveries=3, time_limit=60, soft_time_limit=50,
               job_id="J", idempotency_key="img-42", created_at=99.0, headers={"trace": "t"})
    back = decode(encode(msg))
    for name in ("id", "task", "args", "kwargs", "queue", "priority", "eta", "max_retries",
                 "max_deliveries", "time_limit", "soft_time_limit", "job_id",
                 "idempotency_key", "created_at", "headers"):
        assert getattr(back, name) == getattr(msg, name), name


@pytest.mark.parametrize(
    ("args", "kwargs", "named"),
    [
        ([object()], {}, "args[0]"),
        ([1, {"when": dt.datetime(2026, 1, 1)}], {}, "args[1]['when']"),
        ([], {"blob": b"bytes"}, "kwargs['blob']"),
        ([float("nan")], {}, "args[0]"),
        ([{1: "int key"}], {}, "args[0]"),
        ([{1, 2}], {}, "args[0]"),
    ],
)
def test_arguments_json_cannot_carry_are_refused_by_name(args, kwargs, named):
    with pytest.raises(ArgumentNotSerializable) as err:
        encode(make(args=args, kwargs=kwargs))
    assert named in str(err.value)


def test_size_limit_is_enforced_and_says_what_to_do():
    with pytest.raises(MessageTooLarge, match="store large payloads elsewhere"):
        encode(make(args=["x" * 2000]), max_size=1000)
    assert len(encode(make(args=["x" * 500]), max_size=1000)) <= 1000


@pytest.mark.parametrize("body", [b"\xff\xfe", b"not json", b"[1,2]", b'{"v": 1}',
                                  b'{"v": 99, "id": "a", "task": "t"}',
                                  b'{"v": 1, "id": "a", "task": "t", "args": 5}'])
def test_undecodable_bodies_raise_undecodable(body):
    with pytest.raises(UndecodableMessage):
        decode(body)


def test_signed_messages_verify_with_any_key_and_forgeries_fail():
    old, new = Signer(["old-key"]), Signer(["new-key", "old-key"])
    body = encode(make(args=[1]), signer=old)
    assert decode(body, signer=new).args == [1]  # rotation: the old key still verifies
    forged = json.loads(body)
    forged["args"] = [2]
    with pytest.raises(SignatureError, match="matches none"):
        decode(json.dumps(forged).encode(), signer=new)
    with pytest.raises(SignatureError, match="unsigned"):
        decode(encode(make()), signer=new)
