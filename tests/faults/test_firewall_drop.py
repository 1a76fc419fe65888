"""Connections silently dropped by a stateful firewall: keepalive turns a hang into a fast retry.

A userspace proxy cannot show keepalive at work (its own kernel answers the probes). Here a
network namespace of the test's own holds a Redis server, a worker and a producer; nftables
with conntrack accepts only established flows and new SYNs to Redis, loose pickup of
mid-stream flows is off, and ``conntrack -F`` makes the firewall forget every connection:
from then on every packet of an old connection is dropped in both directions, with no FIN
and no RST, exactly as a cloud firewall does after its idle timeout.

Bounds checked: keepalive 2 s idle + 3 probes 1 s apart, so the kernel declares a dropped
idle connection dead within ~5 s; an idle worker takes the next task within 20 s (its
blocking wait is re-issued at least every 10 s); a pooled producer connection that idled
past the keepalive bound enqueues again in under 5 s instead of hanging for its 30 s
socket timeout.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stalwart.testing.services import in_ci
from stalwart.testing.workers import wait_until

from . import ledger as ledger_mod
from .conftest import ROOT

pytestmark = pytest.mark.faults
PORT = 6390
KEEPALIVE = {"FAULT_KEEPIDLE": "2", "FAULT_KEEPINTVL": "1", "FAULT_KEEPCNT": "3"}


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create a network namespace"
    for tool in ("ip", "nft", "conntrack", "redis-server"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian packages iproute2, nftables, conntrack)"
    return None


class Namespace:
    def __init__(self) -> None:
        self.name = "stw_" + secrets.token_hex(4)
        self.procs: list[subprocess.Popen[bytes]] = []
        self._run("ip", "netns", "add", self.name, inside=False)
        self._run("ip", "link", "set", "lo", "up")
        self._run("sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=0")
        rules = f"""
        table inet stalwart_fw {{
          chain input {{
            type filter hook input priority 0; policy drop;
            ct state established,related accept
            tcp dport {PORT} tcp flags & (syn | ack) == syn ct state new accept
          }}
        }}"""
        subprocess.run(["ip", "netns", "exec", self.name, "nft", "-f", "-"], input=rules.encode(),
                       check=True)

    def _run(self, *cmd: str, inside: bool = True) -> None:
        prefix = ["ip", "netns", "exec", self.name] if inside else []
        subprocess.run([*prefix, *cmd], check=True, capture_output=True)

    def spawn(self, *cmd: str, env: dict[str, str] | None = None,
              log: Path | None = None) -> subprocess.Popen[bytes]:
        out = log.open("ab") if log else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], cwd=ROOT,
                                    env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        finally:
            if log:
                out.close()  # type: ignore[union-attr]  # the child has its own copy
        self.procs.append(proc)
        return proc

    def forget_connections(self) -> None:
        """The firewall's idle timeout: every tracked connection is forgotten at once."""
        subprocess.run(["ip", "netns", "exec", self.name, "conntrack", "-F"],
                       check=True, capture_output=True)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


@pytest.fixture
def netns():
    reason = _missing()
    if reason:
        if in_ci():
            pytest.fail(f"firewall test cannot run: {reason}", pytrace=False)
        pytest.skip(f"FIREWALL TEST SKIPPED: {reason}")
    ns = Namespace()
    try:
        yield ns
    finally:
        ns.close()


def test_silently_dropped_connections_recover_within_the_keepalive_bound(netns, tmp_path, ledger):
    netns.spawn("redis-server", "--port", str(PORT), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no")
    url = f"redis://127.0.0.1:{PORT}/0"
    env = {**os.environ, **KEEPALIVE, "STALWART_BROKER": url, "FAULT_LEDGER": str(ledger),
           "PYTHONPATH": str(ROOT)}
    time.sleep(0.5)
    worker = netns.spawn(sys.executable, "-m", "stalwart", "worker", "tests.faults.apps:app",
                         "-Q", "default", "-c", "2", "--lease-seconds", "10",
                         "--heartbeat-seconds", "2", env=env, log=tmp_path / "worker.log")

    signal_file = tmp_path / "signal"
    signal_file.write_text("")
    client_log = tmp_path / "client.log"
    netns.spawn(sys.executable, "-m", "tests.faults.netns_client", url, str(signal_file),
                env=env, log=client_log)
    assert wait_until(lambda: signal_file.read_text() == "ready", timeout=30), \
        client_log.read_text(errors="replace")
    # The worker ran the first task: its connections are established and now go idle.
    assert wait_until(lambda: ledger_mod.read(ledger).ended, timeout=30), \
        (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
    time.sleep(1.0)

    netns.forget_connections()
    dropped_at = time.monotonic()
    time.sleep(6.0)  # past the keepalive bound (2 + 3 * 1 s): the kernel has given up on them

    # A brand-new connection from a fresh producer is let through (a SYN); the worker's old
    # connections are dead and it must notice and reconnect by itself.
    enqueued_at = time.time()
    enqueue = subprocess.run(
        ["ip", "netns", "exec", netns.name, sys.executable, "-c",
         "import sys; from tests.faults.apps import app, record; "
         "h = record.delay(7); print(h.id)"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True)
    probe_id = enqueue.stdout.strip().splitlines()[-1]
    assert wait_until(lambda: ledger_mod.read(ledger).ended[probe_id] == 1, timeout=20), \
        (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
    took = ledger_mod.read(ledger).first_start[probe_id] - enqueued_at
    print(f"firewall drop: worker took the next task {took:.2f}s after the producer started, "
          f"{time.monotonic() - dropped_at:.1f}s after the drop")

    signal_file.write_text("go")  # the long-lived producer enqueues on its idle pooled conn
    assert wait_until(lambda: "second_enqueue_seconds" in client_log.read_text(), timeout=40), \
        client_log.read_text(errors="replace")
    second = float(client_log.read_text().split("second_enqueue_seconds=")[1].split()[0])
    print(f"firewall drop: idle pooled producer connection enqueued again in {second:.2f}s")
    assert second < 5.0, "the producer hung on a silently dropped connection"

    # And the whole run goes on with nothing lost.
    batch = subprocess.run(
        ["ip", "netns", "exec", netns.name, sys.executable, "-c",
         "from tests.faults.apps import app, record; "
         "print(' '.join(h.id for h in app.send([record.s(i) for i in range(100)])))"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True)
    accepted = batch.stdout.split()
    assert len(accepted) == 100
    assert wait_until(lambda: not ledger_mod.read(ledger).lost(accepted), timeout=60)
    tally = ledger_mod.read(ledger)
    print(f"firewall drop: {tally.summary(accepted)}")
    assert tally.lost(accepted) == [] and tally.doubled() == []
    worker.send_signal(signal.SIGTERM)
