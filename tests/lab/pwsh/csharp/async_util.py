"""ansible-core 2.21.5's Ansible._Async.cs (async_wrapper.ps1's C# util), emulated: the inheritable event the
async process signals, CreateAsyncProcess starting powershell.exe suspended with the given pipes as its standard
handles, ResumeThread, the process's exit code, and the wait handle types.

The lab's WinRM processes may create break-away processes (CanCreateBreakawayProcess: true, the job WinRM runs
commands in allows breakaway), so async_wrapper takes that path; the Win32_Process path it uses otherwise
(OpenProcessAsParent, DuplicateHandleToProcess, CloseHandleInProcess) is outside the lab and fails naming
itself. The started process is a child process of the lab host (Engine.run_process on a thread) that outlives
the task that started it, as a break-away process outlives the WinRM command.
"""

from __future__ import annotations

from typing import Any

from tests.lab.pwsh.csharp.registry import emulates
from tests.lab.pwsh.dotnet_types import DotNetType, MemberNotFound, SimpleType
from tests.lab.pwsh.errors import method_exception
from tests.lab.pwsh.kernel import EventObj, handles_of, KernelHandle, ProcessObj, StreamReaderObj, TaskObj
from tests.lab.pwsh.values import to_str

SOURCE_SHA256 = "880b1baac54e84e2afe743848cd947330331d6e1b022595d7a5408719221e4a5"


class ProcessInformationObj:
    ps_type = "Ansible._Async.ProcessInformation"

    def __init__(self, process: KernelHandle, thread: KernelHandle, pid: int, stdout: TaskObj,
                 stderr: TaskObj) -> None:
        self.Process = process
        self.Thread = thread
        self.ProcessId = pid
        self.ThreadId = pid + 4
        self.StdoutReader = stdout
        self.StderrReader = stderr

    def ps_call(self, name: str, args: list[object]) -> object:
        if name.lower() == "dispose":
            return None
        from tests.lab.pwsh.errors import no_method
        raise no_method(self, name)


def _pipe_of(handle: object) -> Any:
    return getattr(handle, "obj", None)


def create_async_process(rt: Any, args: list[object]) -> ProcessInformationObj:
    app, command_line = to_str(args[0]), to_str(args[1])
    stdin, stdout, stderr = (_pipe_of(a) for a in args[2:5])
    out_reader, err_reader = args[7], args[8]

    def run() -> int:
        chunks = stdin.chunks() if stdin is not None else iter(())
        return rt.host.run_process(app, command_line, chunks, lambda b: stdout.write(b) if stdout else None,
                                   lambda b: stderr.write(b) if stderr else None)

    process = ProcessObj(_finishing(run, stdout, stderr))
    table = handles_of(rt)
    handle = KernelHandle(table.add(process), process)
    thread = KernelHandle(table.add(process), process)
    pid = 5000 + handle.value % 4000

    def read(reader: object) -> TaskObj:
        return TaskObj(reader.read_to_end if isinstance(reader, StreamReaderObj) else (lambda: ""))
    return ProcessInformationObj(handle, thread, pid, read(out_reader), read(err_reader))


def _finishing(run: Any, *pipes: Any) -> Any:
    """The child's run; when it exits its ends of the output pipes close (readers see the end)."""
    def start() -> int:
        try:
            return int(run())
        finally:
            for pipe in pipes:
                if pipe is not None:
                    pipe.close()
    return start


class AsyncUtilType(DotNetType):
    full_name = "Ansible._Async.AsyncUtil"

    def call_static(self, rt: Any, name: str, args: list[object]) -> object:
        low = name.lower()
        if low == "cancreatebreakawayprocess":
            return True
        if low == "createinheritableevent":
            event = EventObj()
            return KernelHandle(handles_of(rt).add(event), event)
        if low == "createasyncprocess":
            return create_async_process(rt, args)
        if low == "resumethread":
            target = getattr(args[0], "obj", None)
            if isinstance(target, ProcessObj):
                target.resume()
            return None
        if low == "getprocessexitcode":
            target = getattr(args[0], "obj", None)
            return target.exit_code if isinstance(target, ProcessObj) and target.exit_code is not None else 259
        if low in ("openprocessasparent", "duplicatehandletoprocess", "closehandleinprocess"):
            raise method_exception(name, len(args), "The lab does not emulate starting async processes under another "
                                                    "parent (its WinRM processes may break away from their job).")
        raise MemberNotFound(name)


class ManagedWaitHandleObj:
    """Ansible._Async.ManagedWaitHandle: a WaitHandle over a SafeWaitHandle, for WaitHandle.WaitAny."""

    ps_type = "Ansible._Async.ManagedWaitHandle"

    def __init__(self, handle: object) -> None:
        self.target = getattr(handle, "obj", None)

    def signaled(self) -> bool:
        return bool(getattr(self.target, "signaled", lambda: False)())


@emulates(SOURCE_SHA256, "ansible-core 2.21.5 lib/ansible/module_utils/csharp/Ansible._Async.cs")
def define() -> list[DotNetType]:
    return [AsyncUtilType(), SimpleType("Ansible._Async.ManagedWaitHandle",
                                        ctor=lambda rt, a: ManagedWaitHandleObj(a[0] if a else None)),
            SimpleType("Ansible._Async.ProcessInformation"), SimpleType("Ansible._Async.Win32Exception")]
