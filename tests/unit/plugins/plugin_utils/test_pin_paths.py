"""The daemon's directory: created private, refused when anyone else could enter it."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

import _pin_fakes  # noqa: F401  (puts the collection on sys.path)
from ansible_collections.pinned.winrm.plugins.plugin_utils._errors import ConfigError
from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_paths import PinPaths, default_persist_root


@pytest.fixture
def root():
    path = tempfile.mkdtemp(prefix="pinp", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_directory_is_created_per_uid_with_mode_0700(root):
    paths = PinPaths(root)
    paths.ensure_dir()
    st = os.lstat(paths.dir)
    assert paths.dir == os.path.join(root, f"pinned-winrm-{os.geteuid()}")
    assert stat.S_IMODE(st.st_mode) == 0o700
    assert st.st_uid == os.geteuid()
    assert os.path.dirname(paths.socket) == paths.dir


@pytest.mark.parametrize("mode", [0o755, 0o710, 0o701, 0o770])
def test_a_directory_others_can_enter_is_refused(root, mode):
    paths = PinPaths(root)
    os.mkdir(paths.dir)
    os.chmod(paths.dir, mode)
    with pytest.raises(ConfigError, match="chmod 700"):
        paths.ensure_dir()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the directory to another uid")
def test_a_directory_owned_by_another_uid_is_refused(root):
    paths = PinPaths(root)
    os.mkdir(paths.dir, 0o700)
    os.chown(paths.dir, 65534, 65534)
    with pytest.raises(ConfigError, match="belongs to uid 65534"):
        paths.ensure_dir()


def test_a_symlink_in_place_of_the_directory_is_refused(root):
    paths = PinPaths(root)
    target = os.path.join(root, "elsewhere")
    os.mkdir(target, 0o700)
    os.symlink(target, paths.dir)
    with pytest.raises(ConfigError, match="not a plain directory"):
        paths.ensure_dir()


def test_a_socket_path_too_long_for_unix_sockets_is_a_config_error(root):
    with pytest.raises(ConfigError, match="longer than"):
        PinPaths(os.path.join(root, "x" * 120))


def test_the_default_root_follows_ansibles_persistent_control_path_dir(root):
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_paths import default_persist_root;"
        "print(default_persist_root())"
    )
    env = {**os.environ, "ANSIBLE_PERSISTENT_CONTROL_PATH_DIR": root}
    out = subprocess.run([sys.executable, "-c", code, _pin_fakes.COLLECTIONS], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout.strip()
    assert out == root
