"""Who holds a lease: the name a process writes into the leases it takes, and whether it is gone.

A lease held by an earlier process of this host that has gone, stopped or killed before it
released what it held, is taken over at once (:func:`holder_gone`), so a restart never
waits out its predecessor's leases; a lease of another host runs out as usual.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
from pathlib import Path

_STARTTIME = 19  # /proc/<pid>/stat's field 22, counted from field 3


def lease_owner() -> str:
    """Name this process in the leases it takes: host, pid, a nonce, and what places the pid.

    ``host:pid:nonce:scope:start``: the nonce tells apart checkers of one process, ``scope``
    (a digest of the kernel's boot id and the pid namespace) and ``start`` (the process's
    start time, in clock ticks since boot) let a later process on this host tell that this
    one has gone (:func:`holder_gone`).
    """
    pid = os.getpid()
    host = socket.gethostname()[:60]
    return f"{host}:{pid}:{os.urandom(3).hex()}:{_process_scope()}:{_started(pid) or '-'}"


@functools.cache
def _process_scope() -> str:
    """Where a pid names one process: this boot of this kernel, and this pid namespace."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
        namespace = str(Path("/proc/self/ns/pid").readlink())
    except OSError:
        return "-"  # not Linux, or /proc hidden: no lease is ever known to be left behind
    return hashlib.sha256(f"{boot}:{namespace}".encode()).hexdigest()[:8]


def _started(pid: int) -> str | None:
    """When process *pid* started, in clock ticks since boot; None when it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) ", from field 3 on
    return fields[_STARTTIME] if len(fields) > _STARTTIME else None


def holder_gone(owner: str) -> bool:
    """Whether the lease *owner* is a process of this host that no longer runs.

    Only for a process this one can judge: the same host name, kernel boot and pid
    namespace. Then its pid either names no process, or another one (another start time).
    Anything else counts as alive, and its lease runs out as usual: another host, an owner
    written by an older version, a process hidden from this one (``ProtectProc=``).
    """
    parts = owner.rsplit(":", 4)
    if len(parts) != 5:  # noqa: PLR2004 - host:pid:nonce:scope:start
        return False
    host, pid_text, _, scope, start = parts
    if scope in {"-", ""} or scope != _process_scope() or start == "-":
        return False
    if host != socket.gethostname()[:60] or not pid_text.isdigit() or int(pid_text) <= 0:
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, as another user: compare its start time, if we may read it
    except OSError:
        return False
    current = _started(pid)
    return current is not None and current != start
