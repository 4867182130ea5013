"""Where the pin daemon lives: its private directory, socket, lock and log.

The directory is `<persist root>/pinned-winrm-<uid>`, mode 0700, owned by the
controller user; anything else (another owner, group/world access, a symlink)
is refused, because whoever can reach the socket can ride the sessions.

One daemon serves one *trust profile*: the values of the environment variables
that change whom the daemon trusts or who it is (CA bundles for OpenSSL, the
Kerberos configuration and client keytab, NTLM's credential file). Runs whose
profile differs reach different daemons (socket and log carry the profile's
hash), so no run inherits trust or identity from the run that started a daemon.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import stat
import time
import typing as t

from ._errors import ConfigError, TransportError

log = logging.getLogger(__name__)

# Bumped when the frame format or a request changes: daemons of two versions then use different sockets.
PROTOCOL_VERSION = 3  # 2: exec output streams in data frames; 3: a task sends its options, the daemon validates

LOCK_NAME = "daemon.lock"
# v<protocol>-<trust profile>.sock: short, for the 107 bytes of a UNIX socket path
SOCKET_GLOB_PREFIX = f"v{PROTOCOL_VERSION}-"

# Environment variables that change whom the daemon trusts or who it authenticates as; they reach the daemon
# (see _pin_start.daemon_env) and pick which daemon serves a run. KRB5CCNAME is not among them: the run's
# credential cache travels in the SessionSpec, so one daemon serves runs with different caches.
TRUST_ENV = (
    "SSL_CERT_FILE",  # OpenSSL's default CA bundle and directory (the host's TLS when no CA is named)
    "SSL_CERT_DIR",
    "OPENSSL_CONF",  # OpenSSL configuration: protocol floors, providers
    "OPENSSL_MODULES",
    "KRB5_CONFIG",  # realms, KDCs, default cache name
    "KRB5_CLIENT_KTNAME",  # client keytab: a Kerberos identity without a password
    "KRB5_KTNAME",
    "KRB5RCACHETYPE",
    "KRB5RCACHEDIR",
    "GSS_MECH_CONFIG",
    "NTLM_USER_FILE",  # pyspnego's cached NTLM credentials: an NTLM identity without a password
)


def env_profile(environ: t.Mapping[str, str]) -> str:
    """A short hash of the trust and identity variables of an environment: which daemon serves it."""
    items = sorted((name, environ[name]) for name in TRUST_ENV if name in environ)
    canonical = "\0".join(f"{name}={value}" for name, value in items)
    return hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()[:10]


# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
_MAX_SOCKET_PATH = 107


def runner_job_root(environ: t.Mapping[str, str]) -> str | None:
    """The private data directory of the ansible-runner job this process runs in, or None outside one.

    ansible-runner (AWX, Automation Platform, and ``ansible_runner.run()``) sets AWX_ISOLATED_DATA_DIR to the
    job's artifact directory, ``<private data dir>/artifacts/<ident>``, in process mode and in a container alike.
    """
    artifacts = environ.get("AWX_ISOLATED_DATA_DIR")
    if not artifacts:
        return None
    parent = os.path.dirname(os.path.abspath(artifacts))
    if os.path.basename(parent) != "artifacts":
        return None
    return os.path.dirname(parent)


def default_persist_root() -> str:
    """Where the daemon's directory goes when ansible_psrp_persist_dir is unset.

    Ansible's persistent control path dir when set explicitly (ANSIBLE_PERSISTENT_CONTROL_PATH_DIR or
    ansible.cfg); else, inside an ansible-runner job, the job's private data directory, so the pin daemon and its
    sessions belong to one job (docs/execution-environments.md); else Ansible's default (~/.ansible/pc), else
    $XDG_RUNTIME_DIR, else ~/.ansible/pc.
    """
    try:
        from ansible import constants as C  # the plugin already imported it; the daemon never calls this

        path = getattr(C, "PERSISTENT_CONTROL_PATH_DIR", None)  # rendered ({{ ANSIBLE_HOME ~ "/pc" }})
        _value, origin = C.config.get_config_value_and_origin("PERSISTENT_CONTROL_PATH_DIR")
        job = runner_job_root(os.environ)
        if job is not None and origin == "default":
            return job
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

    def __init__(self, persist_dir: str | None = None, profile: str | None = None) -> None:
        root = os.path.abspath(os.path.expanduser(persist_dir or default_persist_root()))
        self.root = root
        self.profile = profile if profile is not None else env_profile(os.environ)
        self.dir = os.path.join(root, f"pinned-winrm-{os.geteuid()}")
        self.socket_name = f"{SOCKET_GLOB_PREFIX}{self.profile}.sock"
        self.log_name = f"daemon-{self.profile}.log"
        self.socket = os.path.join(self.dir, self.socket_name)
        self.lock = os.path.join(self.dir, LOCK_NAME)
        self.log = os.path.join(self.dir, self.log_name)
        if len(os.fsencode(self.socket)) > _MAX_SOCKET_PATH:
            raise ConfigError(
                f"ansible_psrp_persist_dir: the pin daemon's socket path {self.socket!r} is longer than the "
                f"{_MAX_SOCKET_PATH} bytes a UNIX socket allows; choose a shorter directory."
            )

    def profiles(self) -> list[str]:
        """The trust profiles with a daemon socket in the directory (running or stale), for the CLI."""
        try:
            names = os.listdir(self.dir)
        except OSError:
            return []
        return sorted(n[len(SOCKET_GLOB_PREFIX):-len(".sock")] for n in names
                      if n.startswith(SOCKET_GLOB_PREFIX) and n.endswith(".sock"))

    def ensure_dir(self) -> None:
        """Create the private directory (0700) if needed and refuse it unless only this user can enter it."""
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        self.check_root()
        try:
            os.mkdir(self.dir, 0o700)
        except FileExistsError:
            pass
        self.check_dir()

    def check_root(self) -> None:
        """Refuse a persist root another user could empty or rearrange: theirs, or writable by others without +t.

        The daemon's directory inside it is checked and then used through a descriptor (open_dir), so such a
        root cannot redirect the daemon's files; it could still swap the directory under the clients.
        """
        uid = os.geteuid()
        try:
            st = os.stat(self.root)
        except FileNotFoundError:
            raise ConfigError(f"the persist directory {self.root} does not exist") from None
        if st.st_uid not in (uid, 0):
            raise ConfigError(
                f"refusing the persist directory {self.root} (ansible_psrp_persist_dir): it belongs to uid "
                f"{st.st_uid}, another user, who could replace the pin daemon's directory in it. Set "
                "ansible_psrp_persist_dir (or ANSIBLE_PERSISTENT_CONTROL_PATH_DIR) to a directory of your own."
            )
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            raise ConfigError(
                f"refusing the persist directory {self.root} (ansible_psrp_persist_dir): its mode is "
                f"{stat.S_IMODE(st.st_mode):04o}, writable by other users without the sticky bit, so they could "
                f"replace the pin daemon's directory in it. Run `chmod go-w {self.root}` (or `chmod +t` on a "
                "shared directory such as /tmp), or choose another ansible_psrp_persist_dir."
            )

    def open_dir(self) -> int:
        """A descriptor of the private directory, verified (owner, mode) after opening it without following links.

        The daemon opens its log, lock and socket relative to this descriptor with O_NOFOLLOW, so neither a
        directory swapped in after the check nor a link planted inside it can redirect them.
        """
        try:
            fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                self._refuse_not_plain()
            raise ConfigError(f"cannot open the pin daemon directory {self.dir}: {exc.strerror}") from None
        try:
            self._check_stat(os.fstat(fd))
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _refuse_not_plain(self) -> t.NoReturn:
        raise ConfigError(
            f"refusing the pin daemon directory {self.dir}: it is not a plain directory (a symlink could point "
            "anywhere). Remove it; it is re-created on the next run."
        )

    def check_dir(self) -> None:
        """Raise ConfigError unless the directory is a real directory owned by us with no group/world access."""
        self.check_root()
        try:
            st = os.lstat(self.dir)
        except FileNotFoundError:
            raise ConfigError(f"the pin daemon directory {self.dir} does not exist") from None
        self._check_stat(st)

    def _check_stat(self, st: os.stat_result) -> None:
        uid = os.geteuid()
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            self._refuse_not_plain()
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

    def __init__(self, path: str, timeout: float, *, dir_fd: int | None = None) -> None:
        self.path = path
        self.timeout = timeout
        self._dir_fd = dir_fd  # open the lock relative to the verified directory (the daemon)
        self._fd: int | None = None

    def __enter__(self) -> DirLock:
        name = os.path.basename(self.path) if self._dir_fd is not None else self.path
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600, dir_fd=self._dir_fd)
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
