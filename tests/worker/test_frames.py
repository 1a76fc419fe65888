"""The supervisor's framed pipe end against multiprocessing's Connection on the child's side."""

from __future__ import annotations

import multiprocessing
import threading

from stalwart.worker.frames import READ_SIZE, FramedEnd


def _pair() -> tuple[FramedEnd, multiprocessing.connection.Connection, object]:
    ours, theirs = multiprocessing.Pipe(duplex=True)
    return FramedEnd(ours.fileno()), theirs, ours  # keep `ours` alive: it owns the fd


def test_many_messages_arrive_in_one_read_in_order() -> None:
    end, child, _keep = _pair()
    sent = [f"verdict-{i}".encode() * (i + 1) for i in range(50)]
    for payload in sent:
        child.send_bytes(payload)
    frames, open_ = end.read()
    assert frames == sent and open_


def test_a_frame_larger_than_one_read_and_a_split_header_are_reassembled() -> None:
    end, child, _keep = _pair()
    big = bytes(range(256)) * (3 * READ_SIZE // 256 + 7)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: child.send_bytes(big))
    reader.start()
    while not got:
        frames, _ = end.read()
        got += frames
    reader.join()
    assert got == [big]


def test_jobs_written_together_are_read_one_by_one_by_the_child() -> None:
    end, child, _keep = _pair()
    jobs = [b"a", b"bb" * 10, b""]
    for job in jobs:
        end.put(job)
    end.flush()
    assert [child.recv_bytes() for _ in jobs] == jobs
    assert not end.outbox


def test_a_full_pipe_is_waited_on_not_dropped() -> None:
    end, child, _keep = _pair()
    payload = b"x" * (4 << 20)  # far more than a socket buffer holds
    end.put(payload)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(child.recv_bytes()))
    reader.start()
    end.flush()
    reader.join(10)
    assert received == [payload]


def test_the_other_end_closing_is_reported_after_its_last_frames() -> None:
    end, child, _keep = _pair()
    child.send_bytes(b"last words")
    child.close()
    frames, _ = end.read()
    assert frames == [b"last words"]
    assert end.read() == ([], False)  # the next readiness is the end of the pipe
