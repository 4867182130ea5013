"""The pin daemon process's own protections: its private log, no core dumps, room for thousands of sessions.

Kept apart from the daemon's request handling: these act on the process and its files, once, at start.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import resource
import stat
import sys
import typing as t

from ._errors import ConfigError

log = logging.getLogger(__name__)

_PR_SET_DUMPABLE = 4  # <linux/prctl.h>


class PrivateLogHandler(logging.StreamHandler[t.TextIO]):
    """The daemon's log: opened relative to its verified directory, never through a link; rotated by rename.

    logging's file handlers open by path and follow links: a link planted as the log would let the daemon
    chmod and append to any file its user can write.
    """

    def __init__(self, dir_fd: int, name: str, *, max_bytes: int = 2 * 1024 * 1024) -> None:
        self._dir_fd = dir_fd
        self._name = name
        self._max_bytes = max_bytes
        super().__init__(self._open())

    def _open(self) -> t.TextIO:
        try:
            fd = os.open(self._name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=self._dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ConfigError(
                    f"refusing the pin daemon's log {self._name}: it is a symbolic link, which would make the daemon "
                    "write to (and chmod) whatever it points at. Remove it; the daemon creates the log itself."
                ) from None
            raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_nlink != 1:
            os.close(fd)
            raise ConfigError(
                f"refusing the pin daemon's log {self._name}: it is not a plain file of yours with a single name "
                "(another link to it could be any file). Remove it; the daemon creates the log itself."
            )
        os.fchmod(fd, 0o600)
        return open(fd, "a", encoding="utf-8", errors="replace", closefd=True)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.stream.tell() >= self._max_bytes:
                self._rotate()
        except (OSError, ValueError, ConfigError):
            pass  # a log that cannot rotate still takes the record
        super().emit(record)

    def _rotate(self) -> None:
        self.acquire()
        try:
            self.stream.close()
            os.replace(self._name, f"{self._name}.1", src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
            self.stream = self._open()
        finally:
            self.release()


def in_dir(dir_fd: int, name: str) -> str:
    """A path to name inside the verified directory that no rename of the directory can redirect (Linux /proc)."""
    via_fd = f"/proc/self/fd/{dir_fd}"
    return f"{via_fd}/{name}" if os.path.isdir(via_fd) else name


def no_core_dumps() -> None:
    """Keep held passwords out of core files and away from same-user debuggers (Linux; elsewhere the rlimit only).

    RLIMIT_CORE 0 stops core files; PR_SET_DUMPABLE 0 also stops core-dump pipes (systemd-coredump, apport),
    and makes /proc/<pid>/mem and ptrace root's alone.
    """
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_DUMPABLE, 0) failed: %s", os.strerror(ctypes.get_errno()))


def raise_open_files_limit() -> None:
    """Lift the soft limit on open files to the hard one: every pinned session holds a socket or two.

    The usual soft limit (1024) would cap the daemon at about a thousand sessions; the hard limit is the
    administrator's bound and stays.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open files limit from %d to %d: %s", soft, target, exc)
