"""ExecResult: a plain tuple class (no NamedTuple in a task's worker) that behaves as the NamedTuple it replaced."""

from __future__ import annotations

import copy
import pickle

from ansible_collections.pinned.winrm.plugins.plugin_utils._runner import ExecResult


def test_an_exec_result_is_the_tuple_rc_stdout_stderr_with_those_names():
    result = ExecResult(3, b"out\r\n", b"err")
    rc, stdout, stderr = result
    assert (rc, stdout, stderr) == (3, b"out\r\n", b"err")
    assert (result.rc, result.stdout, result.stderr) == (3, b"out\r\n", b"err")
    assert result == (3, b"out\r\n", b"err") and isinstance(result, tuple) and len(result) == 3
    assert repr(result) == "ExecResult(rc=3, stdout=b'out\\r\\n', stderr=b'err')"


def test_an_exec_result_is_immutable_and_survives_pickling_and_copying():
    result = ExecResult(0, b"o", b"")
    for attribute in ("rc", "stdout", "stderr", "extra"):
        try:
            setattr(result, attribute, 1)
        except AttributeError:
            continue
        raise AssertionError(f"ExecResult.{attribute} could be set")
    for clone in (pickle.loads(pickle.dumps(result)), copy.copy(result), copy.deepcopy(result)):
        assert repr(clone) == "ExecResult(rc=0, stdout=b'o', stderr=b'')" and clone.stdout == b"o"
