"""Where the pin daemon lives: its private directory, socket, lock and log.

The directory is `<persist root>/pinned-winrm-<uid>`, mode 0700, owned by the
controller user; anything else (another owner, group/world access, a symlink)
is refused, because whoever can reach the socket can ride the sessions.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import time
import typing as t

from ._errors import ConfigError, TransportError

log = logging.getLogger(__name__)

# Bumped when the frame format or a request changes: daemons of two versions then use different sockets.
PROTOCOL_VERSION = 3  # 2: exec output streams in data frames; 3: a task sends its options, the daemon validates

SOCKET_NAME = f"daemon-v{PROTOCOL_VERSION}.sock"
LOCK_NAME = "daemon.lock"
LOG_NAME = "daemon.log"

# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
_MAX_SOCKET_PATH = 107


def default_persist_root() -> str:
    """Ansible's persistent control path dir (~/.ansible/pc), else $XDG_RUNTIME_DIR, else ~/.ansible/pc."""
    try:
        from ansible import constants as C  # the plugin already imported it; the daemon never calls this

        path = getattr(C, "PERSISTENT_CONTROL_PATH_DIR", None)
        if path:
            return os.path.expanduser(str(path))
    except Exception:  # ansible missing or its config unreadable: fall back to the same default it uses
        pass
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return runtime
    return os.path.expanduser("~/.ansible/pc")


class PinPaths:
    """The daemon's private directory and the files in it."""

    def __init__(self, persist_dir: str | None = None) -> None:
        root = os.path.abspath(os.path.expanduser(persist_dir or default_persist_root()))
        self.root = root
        self.dir = os.path.join(root, f"pinned-winrm-{os.geteuid()}")
        self.socket = os.path.join(self.dir, SOCKET_NAME)
        self.lock = os.path.join(self.dir, LOCK_NAME)
        self.log = os.path.join(self.dir, LOG_NAME)
        if len(os.fsencode(self.socket)) > _MAX_SOCKET_PATH:
            raise ConfigError(
                f"ansible_psrp_persist_dir: the pin daemon's socket path {self.socket!r} is longer than the "
                f"{_MAX_SOCKET_PATH} bytes a UNIX socket allows; choose a shorter directory."
            )

    def ensure_dir(self) -> None:
        """Create the private directory (0700) if needed and refuse it unless only this user can enter it."""
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        try:
            os.mkdir(self.dir, 0o700)
        except FileExistsError:
            pass
        self.check_dir()

    def check_dir(self) -> None:
        """Raise ConfigError unless the directory is a real directory owned by us with no group/world access."""
        try:
            st = os.lstat(self.dir)
        except FileNotFoundError:
            raise ConfigError(f"the pin daemon directory {self.dir} does not exist") from None
        uid = os.geteuid()
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise ConfigError(
                f"refusing the pin daemon directory {self.dir}: it is not a plain directory (a symlink could point "
                "anywhere). Remove it; it is re-created on the next run."
            )
        if st.st_uid != uid:
            raise ConfigError(
                f"refusing the pin daemon directory {self.dir}: it belongs to uid {st.st_uid}, not to you "
                f"(uid {uid}); another user could read your WinRM sessions through it. Remove it or set "
                "ansible_psrp_persist_dir to a directory of your own."
            )
        if st.st_mode & 0o077:
            raise ConfigError(
                f"refusing the pin daemon directory {self.dir}: its mode is {stat.S_IMODE(st.st_mode):04o}, "
                "so other users can enter it. Run `chmod 700` on it (or remove it)."
            )


class DirLock:
    """An exclusive flock on the lock file beside the socket, taken with a bounded wait."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._fd: int | None = None

    def __enter__(self) -> DirLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise TransportError(
                        f"timed out after {self.timeout:g}s waiting for the pin daemon lock {self.path}; "
                        "another process holds it (is a daemon stuck starting?)."
                    ) from None
                time.sleep(0.02)
        self._fd = fd
        return self

    def __exit__(self, *exc_info: t.Any) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
