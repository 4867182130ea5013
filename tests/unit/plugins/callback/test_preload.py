"""pinned.winrm.preload (issue 14): the connection plugin loaded once in ansible-playbook, not in every task's worker.

Ansible builds its callbacks in ansible-playbook before it forks any task worker; a worker forked after the callback
loaded the plugin must find the parent's module and not execute the plugin's code again. The fork here is what
Ansible's WorkerProcess is: os.fork() of the process that built the callbacks.
"""

from __future__ import annotations

import pytest

from tests.unit.plugins.connection.test_psrp_worker_cost import _fresh_python

# In the parent: build the callback (or not), mark the plugin's module if it is loaded, then fork a "worker"
# that builds a connection as TaskExecutor does and reports what it found.
_FORKED_WORKER = """
    import io, os
    from ansible.playbook.play_context import PlayContext
    from ansible.plugins.loader import callback_loader, connection_loader
    MODULE = "ansible_collections.pinned.winrm.plugins.connection.psrp"
    preloaded = None
    if {enable}:
        callback = callback_loader.get("pinned.winrm.preload")
        preloaded = callback.preloaded
    if MODULE in sys.modules:
        sys.modules[MODULE].parent_marker = os.getpid()  # what a module executed afresh in the worker lacks
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        before = MODULE in sys.modules
        conn = connection_loader.get("pinned.winrm.psrp", PlayContext(), io.StringIO())
        module = sys.modules[type(conn).__module__]
        os.write(write, json.dumps({{"in_worker_before": before, "module": module.__name__,
                                   "marker": getattr(module, "parent_marker", None),
                                   }}).encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    worker = json.loads(os.read(read, 65536))
    print(json.dumps({{"parent": os.getpid(), "status": status, "preloaded": preloaded, **worker}}))
"""


@pytest.mark.compat
def test_a_worker_forked_after_the_callback_uses_the_plugin_the_parent_loaded():
    seen = _fresh_python(_FORKED_WORKER.format(enable=True))
    assert seen["status"] == 0
    assert seen["preloaded"] == ["pinned.winrm.psrp"]
    assert seen["in_worker_before"] is True
    # the worker's connection is the parent's module, not one it executed afresh
    assert seen["module"] == "ansible_collections.pinned.winrm.plugins.connection.psrp"
    assert seen["marker"] == seen["parent"]


@pytest.mark.compat
def test_without_the_callback_each_worker_loads_the_plugin_itself():
    seen = _fresh_python(_FORKED_WORKER.format(enable=False))
    assert seen["status"] == 0
    assert seen["preloaded"] is None
    assert seen["in_worker_before"] is False
    assert seen["marker"] is None  # executed in the worker: nothing the parent set is on it


@pytest.mark.compat
def test_a_plugin_that_cannot_load_is_left_to_the_tasks_with_a_warning():
    seen = _fresh_python(
        """
        import io
        from contextlib import redirect_stderr
        from ansible_collections.pinned.winrm.plugins.callback.preload import preload
        err = io.StringIO()
        with redirect_stderr(err):
            loaded = preload(("pinned.winrm.no_such_plugin", "pinned.winrm.psrp"))
        print(json.dumps({"loaded": loaded, "stderr": err.getvalue()}))
        """
    )
    assert seen["loaded"] == ["pinned.winrm.psrp"]
    assert "pinned.winrm.preload: no connection plugin pinned.winrm.no_such_plugin was found" in " ".join(
        seen["stderr"].split())
