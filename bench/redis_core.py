"""Core rates of the Redis backend against 127.0.0.1:6379, under a prefix of its own.

    python bench/redis_core.py [--messages 20000]

Measures enqueue (batches of 500, and one by one), claim + complete in batches of 100, and
how soon an idle ``wait`` wakes after an enqueue from another client. Deletes its keys after.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import threading
import time

from stalwart.backends.base import Complete, NewMessage
from stalwart.backends.redis import RedisBackend
from stalwart.ids import new_id
from stalwart.testing.services import delete_redis_keys

HOST, PORT = "127.0.0.1", 6379


def messages(n: int, queue: str) -> list[NewMessage]:
    return [NewMessage(new_id(), "bench.task", queue, b'{"args":[1]}') for _ in range(n)]


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>10,.0f} msg/s  ({n} in {seconds:.2f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--one-by-one", type=int, default=2000)
    parser.add_argument("--wakes", type=int, default=50)
    opts = parser.parse_args()
    prefix = "bench_" + secrets.token_hex(6)
    url = f"redis://{HOST}:{PORT}/0?prefix={prefix}"
    b, producer = RedisBackend(url), RedisBackend(url)
    try:
        batch = messages(opts.messages, "bulk")
        start = time.perf_counter()
        for i in range(0, len(batch), 500):
            b.enqueue(batch[i:i + 500])
        print("enqueue, batches of 500 ", rate(len(batch), time.perf_counter() - start))

        single = messages(opts.one_by_one, "single")
        start = time.perf_counter()
        for m in single:
            b.enqueue([m])
        print("enqueue, one by one     ", rate(len(single), time.perf_counter() - start))

        done, start = 0, time.perf_counter()
        while True:
            got = b.claim(["bulk"], 100, 60, "bench")
            if not got:
                break
            assert all(b.settle([Complete(d.lease, "1") for d in got]))
            done += len(got)
        print("claim+complete, by 100  ", rate(done, time.perf_counter() - start))

        latencies = []
        for _ in range(opts.wakes):
            woke: list[float] = []
            blocked = threading.Event()

            def waiter(woke: list[float] = woke, blocked: threading.Event = blocked) -> None:
                blocked.set()
                if b.wait(["wake"], 5.0):
                    woke.append(time.perf_counter())

            th = threading.Thread(target=waiter)
            th.start()
            blocked.wait()
            time.sleep(0.05)
            sent = time.perf_counter()
            producer.enqueue(messages(1, "wake"))
            th.join()
            latencies.append((woke[0] - sent) * 1000)
            b.claim(["wake"], 10, 60, "bench")
        latencies.sort()
        print(f"wake latency, idle waiter  median {statistics.median(latencies):.2f} ms, "
              f"p95 {latencies[int(len(latencies) * 0.95) - 1]:.2f} ms, "
              f"max {latencies[-1]:.2f} ms  ({len(latencies)} wakes)")
    finally:
        b.close()
        producer.close()
        print(f"deleted {delete_redis_keys(HOST, PORT, prefix)} keys under {prefix}")


if __name__ == "__main__":
    main()
