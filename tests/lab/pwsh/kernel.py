"""Kernel objects a lab process hands to others by handle value: events, anonymous pipes and processes, and the
.NET types scripts reach them through (System.IO.Pipes, StreamReader/StreamWriter, System.Threading's
WaitHandle/ManualResetEvent/SafeWaitHandle).

An inheritable handle keeps its value in a child process, which is how async_wrapper.ps1 tells the process it
starts which event to signal (its WaitHandleId). The lab keeps one HandleTable per process tree: a child
process (Engine.child) shares its parent's, so a handle value means the same object in both.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

from tests.lab.pwsh.dotnet_types import EnumType, register, SimpleType
from tests.lab.pwsh.errors import method_exception, no_method
from tests.lab.pwsh.limits import MAX_SLEEP_SECONDS
from tests.lab.pwsh.values import as_list, to_bool, to_str

WAIT_TIMEOUT = 258


class HandleTable:
    """Handle value -> kernel object, shared along a process tree (inherited handles keep their values)."""

    def __init__(self) -> None:
        self._objects: dict[int, object] = {}
        self._next = itertools.count(0x1A4, 4)  # handle values are multiples of 4
        self._lock = threading.Lock()

    def add(self, obj: object) -> int:
        with self._lock:
            value = next(self._next)
            self._objects[value] = obj
            return value

    def get(self, value: int) -> object:
        with self._lock:
            if value not in self._objects:
                raise KeyError(value)
            return self._objects[value]


def handles_of(rt: Any) -> HandleTable:
    proc = rt.host.process
    table = getattr(proc, "handles", None)
    if table is None:
        table = proc.handles = HandleTable()
    return table  # type: ignore[no-any-return]


class KernelHandle:
    """A SafeHandle over a kernel object: DangerousGetHandle gives its value."""

    ps_type = "Microsoft.Win32.SafeHandles.SafeWaitHandle"

    def __init__(self, value: int, obj: object) -> None:
        self.value = value
        self.obj = obj
        self.IsInvalid = False
        self.IsClosed = False

    def ps_number(self) -> int:
        return self.value

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        if low == "dangerousgethandle":
            from tests.lab.pwsh.net.primitives import IntPtrValue
            return IntPtrValue(self.value)
        if low in ("dispose", "close", "sethandleasinvalid"):
            self.IsClosed = True
            return None
        raise no_method(self, name)


class EventObj:
    """A manual-reset event."""

    def __init__(self, initial: bool = False) -> None:
        self.event = threading.Event()
        if initial:
            self.event.set()

    def signaled(self) -> bool:
        return self.event.is_set()


class PipeObj:
    """An anonymous pipe: bytes written at one end are read at the other until the writer closes it."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._closed = False
        self._cond = threading.Condition()

    def write(self, data: bytes) -> None:
        with self._cond:
            if self._closed:
                raise BrokenPipeError("Pipe is broken.")
            self._chunks.append(data)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def chunks(self, timeout_s: float = 3600.0) -> Iterator[bytes]:
        """What the reading end gets, as it arrives, until the writer closes the pipe."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._cond:
                while not self._chunks and not self._closed:
                    if not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                        return
                if self._chunks:
                    data, self._chunks = b"".join(self._chunks), []
                else:
                    return
            yield data


class ProcessObj:
    """A process started by a script: the thread that runs it, and its exit code once it exits."""

    def __init__(self, start: Any) -> None:
        self.start = start
        self.exit_code: int | None = None
        self.done = threading.Event()
        self.thread: threading.Thread | None = None

    def resume(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="lab-async-process", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        try:
            self.exit_code = int(self.start())
        except Exception:  # the child's own failure is its exit code, as a crashed process's would be
            self.exit_code = 1
        finally:
            self.done.set()

    def signaled(self) -> bool:
        return self.done.is_set()


def wait_any(objects: list[object], timeout_s: float) -> int:
    """WaitHandle.WaitAny: the index of the first signalled object, or WAIT_TIMEOUT."""
    deadline = time.monotonic() + min(timeout_s, MAX_SLEEP_SECONDS)
    while True:
        for idx, obj in enumerate(objects):
            if getattr(obj, "signaled", lambda: False)():
                return idx
        if time.monotonic() >= deadline:
            return WAIT_TIMEOUT
        time.sleep(0.02)


class PipeServerObj:
    """System.IO.Pipes.AnonymousPipeServerStream: the server end of a pipe; ClientSafePipeHandle the other end."""

    ps_type = "System.IO.Pipes.AnonymousPipeServerStream"

    def __init__(self, rt: Any, direction: str) -> None:
        self.pipe = PipeObj()
        self.direction = direction.lower()
        self.ClientSafePipeHandle = KernelHandle(handles_of(rt).add(self.pipe), self.pipe)

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        if low in ("disposelocalcopyofclienthandle", "flush"):
            return None
        if low in ("dispose", "close"):
            if self.direction == "out":
                self.pipe.close()
            return None
        raise no_method(self, name)


class TaskObj:
    """A Task<string>: GetAwaiter().GetResult() waits for the text."""

    ps_type = "System.Threading.Tasks.Task`1[System.String]"

    def __init__(self, produce: Any) -> None:
        self.result: str = ""
        self.done = threading.Event()

        def run() -> None:
            try:
                self.result = produce()
            finally:
                self.done.set()
        threading.Thread(target=run, name="lab-task", daemon=True).start()

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        if low == "getawaiter":
            return self
        if low == "getresult":
            self.done.wait(timeout=MAX_SLEEP_SECONDS)
            return self.result
        raise no_method(self, name)


class StreamReaderObj:
    ps_type = "System.IO.StreamReader"

    def __init__(self, source: object) -> None:
        self.source = source

    def read_to_end(self) -> str:
        pipe = getattr(self.source, "pipe", None)
        if pipe is None:
            return ""
        return b"".join(pipe.chunks()).decode("utf-8", errors="replace")

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        if low == "readtoend":
            return self.read_to_end()
        if low in ("dispose", "close"):
            return None
        raise no_method(self, name)


class StreamWriterObj:
    ps_type = "System.IO.StreamWriter"

    def __init__(self, target: object) -> None:
        self.target = target

    def _write(self, text: str) -> None:
        pipe = getattr(self.target, "pipe", None)
        if pipe is None:
            raise method_exception("Write", 1, "The lab's StreamWriter writes to pipes only.")
        try:
            pipe.write(text.encode("utf-8"))
        except BrokenPipeError:
            raise method_exception("Write", 1, "Pipe is broken.", inner_type="System.IO.IOException") from None

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        if low in ("write", "writeline"):
            self._write((to_str(args[0]) if args else "") + ("\r\n" if low == "writeline" else ""))
            return None
        if low == "flush":
            return None
        if low in ("dispose", "close"):
            pipe = getattr(self.target, "pipe", None)
            if pipe is not None:
                pipe.close()
            return None
        raise no_method(self, name)


class ManualResetEventObj:
    ps_type = "System.Threading.ManualResetEvent"

    def __init__(self, initial: bool) -> None:
        self.SafeWaitHandle: object = KernelHandle(0, EventObj(initial))

    def signaled(self) -> bool:
        return bool(getattr(getattr(self.SafeWaitHandle, "obj", None), "signaled", lambda: False)())

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        event = getattr(self.SafeWaitHandle, "obj", None)
        if low == "set":
            event.event.set()  # type: ignore[union-attr]
            return True
        if low == "reset":
            event.event.clear()  # type: ignore[union-attr]
            return True
        if low == "waitone":
            timeout = (int(args[0]) / 1000.0) if args else MAX_SLEEP_SECONDS  # type: ignore[call-overload]
            return bool(event.event.wait(timeout=min(timeout, MAX_SLEEP_SECONDS)))  # type: ignore[union-attr]
        if low in ("dispose", "close"):
            return None
        raise no_method(self, name)


def _safe_wait_handle(rt: Any, args: list[object]) -> KernelHandle:
    value = int(getattr(args[0], "value", args[0]))  # type: ignore[call-overload]
    try:
        return KernelHandle(value, handles_of(rt).get(value))
    except KeyError:
        raise method_exception("new", len(args), "The handle is invalid.") from None


def _wait_any(rt: Any, args: list[object]) -> int:
    timeout = args[1] if len(args) > 1 else MAX_SLEEP_SECONDS
    seconds = getattr(timeout, "seconds", None)
    return wait_any(as_list(args[0]), float(seconds) if seconds is not None else rt.to_num(timeout) / 1000.0)


register(EnumType("System.IO.Pipes.PipeDirection", {"In": 1, "Out": 2, "InOut": 3}))
register(EnumType("System.IO.HandleInheritability", {"None": 0, "Inheritable": 1}))
register(SimpleType("System.IO.Pipes.AnonymousPipeServerStream",
                    ctor=lambda rt, a: PipeServerObj(rt, to_str(a[0]) if a else "Out")))
register(SimpleType("System.IO.StreamReader", ctor=lambda rt, a: StreamReaderObj(a[0] if a else None)))
register(SimpleType("System.IO.StreamWriter", ctor=lambda rt, a: StreamWriterObj(a[0] if a else None)))
register(SimpleType("Microsoft.Win32.SafeHandles.SafeWaitHandle", ctor=_safe_wait_handle,
                    instance=lambda v: isinstance(v, KernelHandle)))
register(SimpleType("System.Threading.ManualResetEvent",
                    ctor=lambda rt, a: ManualResetEventObj(to_bool(a[0]) if a else False)))
register(SimpleType("System.Threading.WaitHandle", statics={"waittimeout": lambda rt: WAIT_TIMEOUT},
                    methods={"waitany": _wait_any}))
