"""``stalwart doctor APP``: connect as a worker would, and check what silently loses work.

It reports the backend's durability (would an accepted task survive a server restart?),
the keepalive settings of every connection read back from the kernel (a pooled connection
without keepalive is dropped by a firewall while idle and fails on its next use), the clock
skew against the server, and the same for the connections running workers report.

Every check a backend cannot answer is reported as "not available for this backend"; the
command never crashes on a missing feature. It exits 1 while any warning stands, 2 when the
backend cannot be reached at all.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import click
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..app import App
from ..net import SocketKeepalive
from .common import APP_ARGUMENT, JSON_OPTION, emit_json, load_app
from .render import ago, console, plain, raw_backend

NOT_AVAILABLE = "not available for this backend"
SKEW_WARN_SECONDS = 1.0
# SQLite's PRAGMA synchronous values.
_SYNC_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


@dataclass
class Report:
    """Findings by section; a warning anywhere makes the exit status non-zero."""

    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def section(self, name: str) -> dict[str, Any]:
        return self.sections.setdefault(name, {"facts": {}, "notes": [], "warnings": []})

    def fact(self, section: str, key: str, value: Any) -> None:
        self.section(section)["facts"][key] = value

    def note(self, section: str, text: str) -> None:
        self.section(section)["notes"].append(text)

    def warn(self, section: str, text: str) -> None:
        self.section(section)["warnings"].append(text)
        self.warnings.append(f"{section}: {text}")


# --- durability ---------------------------------------------------------------------------


def _norm(info: dict[str, Any]) -> dict[str, Any]:
    """server_info keys compared without regard to case, dashes or underscores."""
    return {str(k).lower().replace("_", "-"): v for k, v in info.items()}


def check_sqlite(report: Report, backend: Any) -> None:
    """journal_mode and synchronous as the backend's own connection has them."""
    sec = "durability"
    values: dict[str, Any] = {}
    conn_fn = getattr(backend, "_conn", None)
    try:
        if callable(conn_fn):
            conn = conn_fn()
            values["journal_mode"] = conn.execute("PRAGMA journal_mode").fetchone()[0]
            values["synchronous"] = int(conn.execute("PRAGMA synchronous").fetchone()[0])
            values["source"] = "the backend's own connection"
        else:
            path = getattr(backend, "path", None)
            if not path:
                report.note(sec, f"journal_mode and synchronous: {NOT_AVAILABLE}")
                return
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
                values["journal_mode"] = conn.execute("PRAGMA journal_mode").fetchone()[0]
            values["source"] = "the database file (synchronous is per connection: not known)"
    except (sqlite3.Error, OSError) as exc:
        report.warn(sec, f"could not read the SQLite settings: {exc}")
        return
    path = getattr(backend, "path", None)
    if path:
        report.fact(sec, "file", os.path.abspath(path))
    mode = str(values.get("journal_mode", "?")).lower()
    report.fact(sec, "journal_mode", mode)
    if mode != "wal":
        report.warn(sec, f"journal_mode is {mode}, not wal: workers block each other and "
                         "readers wait for writers")
    if "synchronous" in values:
        sync = values["synchronous"]
        report.fact(sec, "synchronous", _SYNC_NAMES.get(sync, str(sync)))
        if sync < 2:
            report.warn(sec, f"synchronous is {_SYNC_NAMES.get(sync, sync)}: a message accepted "
                             "just before a power cut or OS crash may be lost (FULL keeps it)")
    report.fact(sec, "read from", values["source"])


def check_redis(report: Report, info: dict[str, Any]) -> None:
    sec = "durability"
    n = {k: v for k, v in _norm(info).items() if v is not None}  # None: CONFIG is disabled
    aof = str(n.get("appendonly", "?")).lower()
    fsync = str(n.get("appendfsync", "?")).lower()
    save = n.get("save", "?")
    policy = str(n.get("maxmemory-policy", "?")).lower()
    if aof == "?":
        report.note(sec, f"appendonly: {NOT_AVAILABLE} (CONFIG GET refused?); check the "
                         "server's persistence settings by hand")
    report.fact(sec, "appendonly", aof)
    report.fact(sec, "appendfsync", fsync)
    report.fact(sec, "save", save if save not in ("", None) else "(no snapshots)")
    report.fact(sec, "maxmemory-policy", policy)
    if aof in ("no", "0", "false"):
        snap = (f"snapshots ({save}) keep only what was saved before the restart"
                if save not in ("", None, "?") else "nothing is saved to disk at all")
        report.warn(sec, "appendonly is no: accepted tasks live only in memory and a Redis "
                         f"restart loses them; {snap}. Set appendonly yes, appendfsync everysec "
                         "or always.")
    elif fsync == "no":
        report.warn(sec, "appendfsync is no: the OS decides when the AOF reaches the disk; a "
                         "host crash may lose many seconds of accepted tasks")
    elif fsync == "everysec":
        report.note(sec, "appendfsync everysec: a host crash may lose up to one second of "
                         "accepted tasks (always loses none, at a cost in throughput)")
    if policy not in ("noeviction", "?"):
        report.warn(sec, f"maxmemory-policy is {policy}: when memory fills up Redis evicts "
                         "keys, and an evicted queue or lease is work lost without a trace. "
                         "Set maxmemory-policy noeviction.")
    elif policy == "?":
        report.note(sec, f"maxmemory-policy: {NOT_AVAILABLE}")


def check_postgres(report: Report, info: dict[str, Any]) -> None:
    sec = "durability"
    n = _norm(info)
    for key in ("server-version", "synchronous-commit", "fsync", "full-page-writes",
                "wal-level", "schema", "schema-version"):
        if key in n:
            report.fact(sec, key.replace("-", "_"), n[key])
    sync = str(n.get("synchronous-commit", "?")).lower()
    if sync == "off":
        report.warn(sec, "synchronous_commit is off: enqueue returns before the WAL is on disk; "
                         "a server crash may lose tasks that were reported as accepted")
    elif sync == "?":
        report.note(sec, f"synchronous_commit: {NOT_AVAILABLE}")
    if str(n.get("fsync", "on")).lower() == "off":
        report.warn(sec, "fsync is off: a server crash can lose or corrupt accepted tasks")


def check_durability(report: Report, backend: Any, scheme: str,
                     info: dict[str, Any] | None) -> None:
    sec = "durability"
    report.section(sec)
    if scheme == "sqlite":
        check_sqlite(report, backend)
    elif info is not None and scheme in ("redis", "rediss", "unix"):
        check_redis(report, info)
    elif info is not None and scheme in ("postgresql", "postgres"):
        check_postgres(report, info)
    elif scheme == "memory":
        report.warn(sec, "memory:// keeps everything in this process only; tasks do not "
                         "survive it, and no other process can see them (for tests only)")
    elif info is not None:
        for key, value in sorted(info.items()):
            report.fact(sec, str(key), value)
    else:
        report.note(sec, f"server settings: {NOT_AVAILABLE}")


# --- clock --------------------------------------------------------------------------------


def server_skew(info: dict[str, Any] | None, asked_at: tuple[float, float]) -> float | None:
    """Server clock minus this host's, in seconds, or None when the server gives no time.

    A backend's own ``clock_skew`` (this host minus the server, measured around one round
    trip) is preferred; otherwise the server's time is compared with the middle of the call.
    """
    if not info:
        return None
    n = _norm(info)
    own = n.get("clock-skew")
    if isinstance(own, (int, float)) and not isinstance(own, bool):
        return -float(own)
    for key in ("time", "server-time", "now", "clock"):
        value = _epoch(n.get(key))
        if value is not None:
            return value - (asked_at[0] + asked_at[1]) / 2
    return None


def _epoch(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.timestamp()
    return None


def check_clock(report: Report, info: dict[str, Any] | None, asked_at: tuple[float, float],
                scheme: str = "") -> None:
    sec = "clock"
    report.section(sec)
    skew = server_skew(info, asked_at)
    if skew is None and scheme in ("sqlite", "memory"):
        report.note(sec, "the store lives on this host and every time comes from this host's "
                         "clock: no skew against a server is possible")
        return
    if skew is None:
        report.note(sec, f"clock skew against the server: {NOT_AVAILABLE}")
        return
    t0, t1 = asked_at
    report.fact(sec, "skew_seconds", round(skew, 4))
    report.fact(sec, "measured within", f"{t1 - t0:.4f}s")
    if abs(skew) > SKEW_WARN_SECONDS + (t1 - t0):
        side = "behind" if skew > 0 else "ahead of"
        report.warn(sec, f"this host's clock is {abs(skew):.2f}s {side} the server's: leases "
                         "and etas are judged by each host's clock, so skewed hosts expire "
                         "leases early or late. Run NTP (chrony, systemd-timesyncd).")
    else:
        report.note(sec, f"this host's clock agrees with the server's within "
                         f"{SKEW_WARN_SECONDS:g}s")


# --- connections --------------------------------------------------------------------------


def _tcp_timers() -> dict[tuple[str, str], tuple[str, float, int]]:
    """(local, peer) -> (timer name, seconds left, probes sent), from /proc/net/tcp{,6}."""
    names = {0: "off", 1: "on", 2: "keepalive", 3: "timewait", 4: "persist"}
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    out: dict[tuple[str, str], tuple[str, float, int]] = {}
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 10:
                continue
            timer, _, ticks = cols[5].partition(":")
            try:
                key = (_proc_addr(cols[1]), _proc_addr(cols[2]))
                out[key] = (names.get(int(timer, 16), timer), int(ticks, 16) / hz,
                            int(cols[6], 16))
            except ValueError:
                continue
    return out


def _proc_addr(text: str) -> str:
    """/proc/net/tcp's ``0100007F:18EB`` (32-bit words in host order) as ``127.0.0.1:6379``."""
    hexip, _, hexport = text.partition(":")
    raw = b"".join(int(hexip[i:i + 8], 16).to_bytes(4, sys.byteorder)
                   for i in range(0, len(hexip), 8))
    ip = ipaddress.ip_address(raw)
    return f"{ip}:{int(hexport, 16)}"


def _is_tcp(conn: dict[str, Any]) -> bool:
    return ":" in str(conn.get("peer", "")) or ":" in str(conn.get("local", ""))


def _conn_dict(conn: Any) -> dict[str, Any]:
    if isinstance(conn, SocketKeepalive):
        return plain(conn)  # type: ignore[no-any-return]
    if isinstance(conn, dict):
        return dict(conn)
    return {"description": str(conn)}


def check_connections(report: Report, sec: str, conns: list[Any], own: bool) -> None:
    """Each connection with its keepalive, like ``ss -ton``; warn where keepalive is off."""
    timers = _tcp_timers() if own else {}
    rows = []
    for raw in conns:
        c = _conn_dict(raw)
        found = timers.get((str(c.get("local")), str(c.get("peer"))))
        if found is not None:
            name, left, probes = found
            c["timer"] = f"timer:({name},{left:.0f}sec,{probes})"
        rows.append(c)
        if not _is_tcp(c):
            continue
        if not c.get("keepalive"):
            report.warn(sec, f"connection {c.get('local', '?')} -> {c.get('peer', '?')} has "
                             "SO_KEEPALIVE off: an idle firewall or NAT may drop it silently and "
                             "the next command fails with 'connection reset'")
    report.section(sec)["connections"] = rows


def own_connections(report: Report, backend: Any) -> None:
    sec = "connections"
    report.section(sec)
    fn = getattr(backend, "connections", None)
    if not callable(fn):
        if urlsplit(backend.url).scheme in ("sqlite", "memory"):
            report.note(sec, "no network connections: the store is local to this host")
        else:
            report.note(sec, f"listing connections: {NOT_AVAILABLE}")
        return
    try:
        conns = list(fn())
    except Exception as exc:  # a diagnostic must report, not crash
        report.warn(sec, f"could not list connections: {type(exc).__name__}: {exc}")
        return
    if not conns:
        report.note(sec, "no open connection right now")
    check_connections(report, sec, conns, own=True)


def check_workers(report: Report, backend: Any) -> None:
    sec = "workers"
    report.section(sec)
    try:
        workers = backend.workers()
    except Exception as exc:
        report.warn(sec, f"could not read the worker registry: {type(exc).__name__}: {exc}")
        return
    now = time.time()
    entries = []
    for w in workers:
        entry: dict[str, Any] = {"id": w.id, "hostname": w.hostname, "pid": w.pid,
                                 "queues": list(w.queues), "last_seen": w.last_seen}
        entries.append(entry)
        if w.last_seen - now > SKEW_WARN_SECONDS + 1:
            report.warn(sec, f"worker {w.id} on {w.hostname} last registered "
                             f"{w.last_seen - now:.1f}s in the future: its clock is ahead of "
                             "this host's; run NTP on both")
        conns = (w.meta or {}).get("connections")
        if conns is None:
            entry["connections"] = None
            report.note(sec, f"worker {w.id}: connections not reported by this worker")
            continue
        before = len(report.warnings)
        sub = f"worker {w.id}"
        check_connections(report, sub, list(conns), own=False)
        entry["connections"] = report.sections.pop(sub)["connections"]
        for text in report.warnings[before:]:
            report.section(sec)["warnings"].append(text)
    report.section(sec)["workers"] = entries
    if not workers:
        report.note(sec, "no live worker is registered")


# --- the command --------------------------------------------------------------------------


def diagnose(app: App) -> tuple[Report, int]:
    """Run every check; returns the report and the exit status."""
    report = Report()
    url = app.broker_url
    try:
        backend = raw_backend(app.open_backend())
    except Exception as exc:
        report.fact("backend", "url", _redacted(url))
        report.warn("backend", f"cannot open the backend: {type(exc).__name__}: {exc}")
        return report, 2
    scheme = urlsplit(str(getattr(backend, "url", url))).scheme
    try:
        report.fact("backend", "url", backend.url)
        report.fact("backend", "class", f"{type(backend).__module__}.{type(backend).__name__}")
        report.fact("backend", "capabilities", sorted(getattr(backend, "capabilities", ())))
        s = app.connection
        report.fact("backend", "keepalive asked for",
                    f"idle={s.keepalive_idle}s intvl={s.keepalive_interval}s "
                    f"cnt={s.keepalive_count} (dead peer noticed within {s.dead_peer_bound}s)")
        try:
            backend.queue_stats()  # a real round trip, as a worker's first call would be
        except Exception as exc:
            report.warn("backend", f"cannot reach the backend: {type(exc).__name__}: {exc}")
            return report, 2
        info, asked = _server_info(report, backend)
        check_durability(report, backend, scheme, info)
        check_clock(report, info, asked, scheme)
        own_connections(report, backend)
        check_workers(report, backend)
    finally:
        try:
            backend.close()
        except Exception:  # closing is best effort in a diagnostic
            pass
    return report, 1 if report.warnings else 0


def _redacted(url: str) -> str:
    from ..backends import redact

    return redact(url)


def _server_info(report: Report, backend: Any) -> tuple[dict[str, Any] | None,
                                                        tuple[float, float]]:
    fn = getattr(backend, "server_info", None)
    t0 = time.time()
    if not callable(fn):
        return None, (t0, t0)
    try:
        info = fn()
    except Exception as exc:
        report.warn("durability", f"server_info failed: {type(exc).__name__}: {exc}")
        return None, (t0, time.time())
    t1 = time.time()
    return (dict(info) if info else None), (t0, t1)


def render(report: Report, status: int) -> None:
    out = console()
    for name, sec in report.sections.items():
        out.rule(f"[bold]{name}")
        for key, value in sec["facts"].items():
            out.print(f"  {key}: {value}", markup=False, highlight=False)
        conns = sec.get("connections")
        if conns is not None:
            out.print(_connections_table(conns))
        for w in sec.get("workers", []):
            out.print(f"  worker {w['id']} on {w['hostname']} pid {w['pid']} queues "
                      f"{','.join(w['queues'])} last seen {ago(w['last_seen'])}",
                      markup=False, highlight=False)
            if w["connections"] is not None:
                out.print(_connections_table(w["connections"]))
        for text in sec["notes"]:
            out.print(f"  [dim]note:[/] {escape(text)}", highlight=False)
        for text in sec["warnings"]:
            out.print(Text(f"  WARNING: {text}", style="bold red"))
    out.rule()
    if status == 0:
        out.print("[bold green]no warnings[/]")
    else:
        out.print(f"[bold red]{len(report.warnings)} warning(s)[/]")


def _connections_table(conns: list[dict[str, Any]]) -> Table:
    table = Table(box=None, padding=(0, 2), show_edge=False)
    for column in ("fd", "local", "peer", "keepalive", "idle", "intvl", "cnt", "timer"):
        table.add_column(column)
    for c in conns:
        on = bool(c.get("keepalive"))
        tcp = _is_tcp(c)
        flag = Text("on" if on else ("off" if tcp else "n/a (not TCP)"),
                    style="green" if on else ("bold red" if tcp else "dim"))
        table.add_row(*(Text(str(c.get(k, d))) for k, d in (("fd", ""), ("local", "?"),
                                                             ("peer", "?"))),
                      flag, *(Text(str(c.get(k, ""))) for k in ("idle", "interval", "count",
                                                                "timer")))
    if not conns:
        table.add_row("", "(none)", "", "", "", "", "", "")
    return table


@click.command("doctor")
@APP_ARGUMENT
@JSON_OPTION
def command(app_spec: str, as_json: bool) -> None:
    """Check durability, keepalive on every connection, clock skew; exit 1 on any warning."""
    app = load_app(app_spec)
    report, status = diagnose(app)
    if as_json:
        emit_json({"status": status, "warnings": report.warnings,
                   "sections": plain(report.sections)})
    else:
        render(report, status)
    raise SystemExit(status)
