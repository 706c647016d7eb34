"""sd_notify(3) in a few lines: tell systemd we are ready, alive, doing what, or stopping.

systemd names a datagram socket in ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract
namespace) and reads newline-separated ``KEY=value`` assignments from each datagram:
``READY=1``, ``WATCHDOG=1``, ``STATUS=...``, ``STOPPING=1``. Outside systemd there is no socket
and every call is a no-op. A failed send is logged once and never raised: losing a status line
must not stop the daemon (a lost ``WATCHDOG=1`` is what the watchdog exists to notice).
"""

from __future__ import annotations

import socket
import threading
from datetime import timedelta

import structlog

from notifier.core.messages import one_line

log = structlog.get_logger("notifier.sdnotify")


class SystemdNotifier:
    """Send sd_notify messages to the socket systemd named; do nothing without one."""

    def __init__(self, notify_socket: str | None) -> None:
        self._address = _address(notify_socket)
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()  # the scheduler's threads and the main thread all send
        self._warned = False
        if notify_socket and self._address is None:
            log.warning(
                "systemd.notify_unsupported",
                notify_socket=notify_socket,
                reason="only a path or an @abstract name is supported",
            )

    @property
    def enabled(self) -> bool:
        """True when systemd gave us a socket to talk to."""
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` *assignments* as one datagram; False if nothing was sent."""
        if self._address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode("utf-8")
        with self._lock:
            try:
                if self._socket is None:
                    self._socket = socket.socket(
                        socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                    )
                self._socket.sendto(payload, self._address)
            except OSError as error:
                if not self._warned:
                    # Once: a gone socket would otherwise log every five seconds.
                    log.warning("systemd.notify_failed", reason=error.strerror or str(error))
                    self._warned = True
                return False
        return True

    def status(self, text: str) -> bool:
        """Set the one-line status ``systemctl status`` shows."""
        return self.notify(f"STATUS={one_line(text)}")

    def close(self) -> None:
        """Close the socket."""
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None


def _address(notify_socket: str | None) -> str | None:
    if not notify_socket:
        return None
    if notify_socket.startswith("/"):
        return notify_socket
    if notify_socket.startswith("@") and len(notify_socket) > 1:
        return "\0" + notify_socket[1:]  # Linux abstract namespace
    return None  # e.g. systemd 254's vsock: addresses, for VMs; not ours to support


def watchdog_timeout(usec: str | None, pid: str | None, own_pid: int) -> timedelta | None:
    """The watchdog timeout systemd set for this process, or None (sd_watchdog_enabled(3)).

    ``WATCHDOG_PID``, when set, names the process the watchdog is meant for; a child that
    inherited the environment must not keep its parent's watchdog fed.
    """
    if not usec:
        return None
    try:
        microseconds = int(usec)
        if pid and int(pid) != own_pid:
            return None
    except ValueError:
        return None
    if microseconds <= 0:
        return None
    return timedelta(microseconds=microseconds)
