"""The supervisor's end of a child's pipe: many messages per read, many per write.

Frames are ``multiprocessing.connection``'s (a 4-byte big-endian length, then the bytes),
so the child keeps its plain ``Connection.recv_bytes``/``send_bytes``. The supervisor's end
is non-blocking: one ``read`` takes every verdict the child has sent since the last one,
and the jobs for one child leave in one ``write``, instead of a poll and two reads per
message and a write per job.
"""

from __future__ import annotations

import os
import select
import struct

_LENGTH = struct.Struct("!i")
READ_SIZE = 1 << 16
WRITE_STALL_SECONDS = 1.0  # a full pipe is waited on in slices this long


class FrameError(Exception):
    """The bytes on a pipe are not frames: the other end is broken."""


class FramedEnd:
    """A non-blocking file descriptor with an inbox and an outbox of frames."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)
        self.inbox = bytearray()
        self.outbox = bytearray()

    def put(self, payload: bytes) -> None:
        """Queue one frame; ``flush`` sends it."""
        self.outbox += _LENGTH.pack(len(payload))
        self.outbox += payload

    def flush(self) -> None:
        """Write the outbox, waiting while the pipe is full. OSError if the peer is gone."""
        view = memoryview(self.outbox)
        sent = 0
        try:
            while sent < len(view):
                try:
                    sent += os.write(self.fd, view[sent:])
                except BlockingIOError:
                    select.select([], [self.fd], [], WRITE_STALL_SECONDS)
        finally:
            view.release()
            del self.outbox[:sent]

    def read(self) -> tuple[list[bytes], bool]:
        """Every whole frame that has arrived, and False once the other end has closed."""
        open_ = True
        while True:
            try:
                data = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                break
            except OSError:
                open_ = False
                break
            if not data:
                open_ = False
                break
            self.inbox += data
            if len(data) < READ_SIZE:
                break
        return self._frames(), open_

    def _frames(self) -> list[bytes]:
        buf, pos, out = self.inbox, 0, []
        while len(buf) - pos >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(buf, pos)
            if size < 0:
                raise FrameError(f"a frame of {size} bytes")
            end = pos + _LENGTH.size + size
            if end > len(buf):
                break
            out.append(bytes(buf[pos + _LENGTH.size:end]))
            pos = end
        del buf[:pos]
        return out
