"""Sortable unique ids: creation order by text comparison, unique across processes and hosts."""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
_lock = threading.Lock()
_last_ms = 0
_seq = 0


def _b32(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_id() -> str:
    """A 26-character id: 48 bits of milliseconds, 20 bits of in-process sequence, 60 random.

    Ids made by one process sort in the order they were made, even within one millisecond;
    ids from different processes sort by millisecond, which is what FIFO needs.
    """
    global _last_ms, _seq
    with _lock:
        now_ms = int(time.time() * 1000)
        if now_ms > _last_ms:
            _last_ms, _seq = now_ms, 0
        else:
            _seq += 1
            if _seq >= 1 << 20:  # more than a million ids in one ms: borrow the next ms
                _last_ms, _seq = _last_ms + 1, 0
        ms, seq = _last_ms, _seq
    rand = int.from_bytes(os.urandom(8), "big") >> 4
    return _b32(ms, 10) + _b32(seq, 4) + _b32(rand, 12)


def new_token() -> str:
    """A lease token: unguessable, unique per claim."""
    return os.urandom(12).hex()
