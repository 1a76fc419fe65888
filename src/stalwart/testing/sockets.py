"""Read the TCP keepalive settings of every socket another process holds.

``pidfd_getfd`` (Linux 5.6+) duplicates a file descriptor out of another process, so the
options can be read with getsockopt exactly as that process's kernel applies them: no
trust in what the process reports about itself. Needs ptrace rights over the target (root,
or the same user with a permissive ``ptrace_scope``).
"""

from __future__ import annotations

import ctypes
import os
import socket
from dataclasses import dataclass

from ..net import SocketKeepalive, read_keepalive

_SYS_PIDFD_OPEN = 434
_SYS_PIDFD_GETFD = 438
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class ForeignSocket:
    pid: int
    fd: int
    keepalive: SocketKeepalive


def _tcp_table() -> dict[str, int]:
    """Inode -> local port of every established TCP socket on this host."""
    ports = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh)
                for line in fh:
                    fields = line.split()
                    if fields[3] == "01":  # ESTABLISHED
                        ports[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
        except FileNotFoundError:
            continue
    return ports


def _tcp_inodes() -> set[str]:
    return set(_tcp_table())


def tcp_local_ports(pid: int) -> list[int]:
    """Local ports of the established TCP sockets ``pid`` holds (no ptrace rights needed)."""
    table, ports = _tcp_table(), []
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:[") and target[8:-1] in table:
            ports.append(table[target[8:-1]])
    return ports


def _syscall(number: int, *args: int) -> int:
    result = _libc.syscall(number, *args)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(result)


def established_tcp_sockets(pid: int) -> list[ForeignSocket]:
    """Every established TCP socket of ``pid``, with keepalive read back by getsockopt."""
    tcp = _tcp_inodes()
    found = []
    pidfd = _syscall(_SYS_PIDFD_OPEN, pid, 0)
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{name}")
            except FileNotFoundError:
                continue
            if not target.startswith("socket:[") or target[8:-1] not in tcp:
                continue
            try:
                local_fd = _syscall(_SYS_PIDFD_GETFD, pidfd, int(name), 0)
            except OSError:
                continue  # closed between listdir and getfd
            sock = socket.socket(fileno=local_fd)
            try:
                found.append(ForeignSocket(pid, int(name), read_keepalive(sock)))
            finally:
                sock.detach()
                os.close(local_fd)
    finally:
        os.close(pidfd)
    return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out
