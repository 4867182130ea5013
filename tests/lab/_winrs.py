"""WS-Management shells of the simulated Windows host: the common shell state and WinRS cmd shells.

A WinRS command runs Engine.run_cmd in its own thread; stdin arrives through Send, stdout and
stderr leave through Receive, which long-polls on the shell's condition variable.
"""

from __future__ import annotations

import base64
import logging
import queue
import re
import threading
import time
import typing as t
import xml.etree.ElementTree as ET

from tests.lab import _internal, _soap
from tests.lab._soap import NS, el, q

log = logging.getLogger(__name__)

COMMAND_STATE_DONE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done"
COMMAND_STATE_RUNNING = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Running"
SIGNAL_TERMINATE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/terminate"
SIGNAL_CTRL_C = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/ctrl_c"
SIGNAL_CTRL_BREAK = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/ctrl_break"
SIGNAL_PS_CTRL_C = "powershell/signal/ctrl_c"
SIGNAL_PS_CRTL_C = "powershell/signal/crtl_c"  # the misspelling PowerShell itself sends

# Bytes of SOAP around the Stream elements of a ReceiveResponse (header, CommandState, slack).
RECEIVE_OVERHEAD = 2048
_END = object()


class Shell:
    """State every WS-Management shell shares: identity, owner, idle clock, Receive wake-ups."""

    kind = "shell"

    def __init__(
        self,
        shell_id: str,
        owner: str,
        resource_uri: str,
        idle_timeout_s: float,
        input_streams: str,
        output_streams: str,
        client_address: str,
        clock: t.Callable[[], float] = time.monotonic,
    ) -> None:
        self.id = shell_id
        self.owner = owner
        self.resource_uri = resource_uri
        self.idle_timeout_s = idle_timeout_s
        self.input_streams = input_streams
        self.output_streams = output_streams
        self.client_address = client_address
        self.clock = clock  # the service's clock: idle time and run time are measured on it
        self.created = clock()
        self.last_activity = self.created
        self.busy = 0  # requests in flight on this shell (a pending Receive keeps it alive)
        self.closed = False
        self.cond = threading.Condition()

    def touch(self) -> None:
        self.last_activity = self.clock()

    def idle_expired(self, now: float) -> bool:
        return self.busy == 0 and now - self.last_activity > self.idle_timeout_s

    def shell_xml(self, extra: str = "", tail: str = "") -> str:
        """The rsp:Shell element Windows returns from Create and Get."""
        now = self.clock()
        return el(
            "rsp:Shell",
            attrs={"xmlns:rsp": NS["rsp"]},
            children=(
                el("rsp:ShellId", self.id)
                + el("rsp:ResourceUri", self.resource_uri)
                + el("rsp:Owner", self.owner)
                + el("rsp:ClientIP", self.client_address)
                + extra
                + el("rsp:ShellRunTime", _soap.format_runtime(now - self.created))
                + el("rsp:ShellInactivity", _soap.format_runtime(now - self.last_activity))
                + tail
            ),
        )

    def wait(self, predicate: t.Callable[[], bool], timeout_s: float) -> bool:
        """Block until predicate() (checked under self.cond) or the shell closes or time runs out."""
        with self.cond:
            return self.cond.wait_for(lambda: self.closed or predicate(), timeout=timeout_s) and not self.closed

    def notify(self) -> None:
        with self.cond:
            self.cond.notify_all()

    # Operations every shell type implements.
    def create_response_extra(self) -> str:
        return ""

    def command(self, req: _soap.Request) -> str:
        raise NotImplementedError

    def send(self, req: _soap.Request) -> str:
        raise NotImplementedError

    def receive(self, req: _soap.Request, timeout_s: float) -> str:
        raise NotImplementedError

    def signal(self, req: _soap.Request) -> str:
        raise NotImplementedError

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


class _StdinQueue:
    """Blocking iterator of stdin chunks fed by Send, ending at End="true" or shell close."""

    def __init__(self) -> None:
        self._queue: queue.Queue[object] = queue.Queue()

    def put(self, data: bytes) -> None:
        self._queue.put(data)

    def end(self) -> None:
        self._queue.put(_END)

    def __iter__(self) -> t.Iterator[bytes]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            yield t.cast(bytes, item)


class WinRSCommand:
    def __init__(self, command_id: str) -> None:
        self.id = command_id
        self.stdin = _StdinQueue()
        self.chunks: list[tuple[str, bytes]] = []  # (stream name, bytes) not yet received
        self.done = False
        self.exit_code = 0
        self.thread: threading.Thread | None = None


class WinRSShell(Shell):
    """A cmd shell (resource URI .../windows/shell/cmd) running Engine.run_cmd per Command."""

    kind = "winrs"

    def __init__(
        self,
        *args: t.Any,
        engine: t.Any,
        environment: dict[str, str],
        working_directory: str | None,
        no_profile: bool,
        codepage: int | None,
        **kwargs: t.Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.engine = engine
        self.environment = environment
        self.working_directory = working_directory
        self.no_profile = no_profile
        self.codepage = codepage
        self.commands: dict[str, WinRSCommand] = {}
        # The engine interface has no per-shell options yet; pass them if it grows a hook for them.
        configure = getattr(engine, "configure_shell", None)
        if callable(configure):
            configure(environment=environment, working_directory=working_directory, no_profile=no_profile)

    def create_response_extra(self) -> str:
        extra = ""
        if self.environment:
            extra += el(
                "rsp:Environment",
                children="".join(el("rsp:Variable", v, {"Name": k}) for k, v in self.environment.items()),
            )
        if self.working_directory:
            extra += el("rsp:WorkingDirectory", self.working_directory)
        extra += el("rsp:IdleTimeOut", _soap.format_duration(self.idle_timeout_s))
        extra += el("rsp:InputStreams", self.input_streams) + el("rsp:OutputStreams", self.output_streams)
        return extra

    def command(self, req: _soap.Request) -> str:
        line = req.body.find("rsp:CommandLine", NS)
        if line is None:
            raise _soap.invalid_parameter()
        executable = (line.findtext("rsp:Command", default="", namespaces=NS) or "").strip()
        arguments = [a.text or "" for a in line.findall("rsp:Arguments", NS)]
        if req.options.get("WINRS_SKIP_CMD_SHELL", "").lower() == "true" and not _is_path(executable):
            # Without cmd.exe in between, WinRS starts the executable as given and does not search PATH.
            raise _soap.file_not_found()
        command_id = (line.attrib.get("CommandId") or _soap.new_id()).upper()
        cmd = WinRSCommand(command_id)
        with self.cond:
            self.commands[command_id] = cmd
        cmd.thread = threading.Thread(
            target=self._run, args=(cmd, executable, arguments), name=f"winrs-{command_id[:8]}", daemon=True
        )
        cmd.thread.start()
        return el("rsp:CommandResponse", children=el("rsp:CommandId", command_id))

    def _run(self, cmd: WinRSCommand, executable: str, arguments: list[str]) -> None:
        def writer(stream: str) -> t.Callable[[bytes], None]:
            def write(data: bytes) -> None:
                if data:
                    with self.cond:
                        cmd.chunks.append((stream, bytes(data)))
                        self.cond.notify_all()

            return write

        try:
            code = self.engine.run_cmd(executable, arguments, cmd.stdin, writer("stdout"), writer("stderr"))
        except Exception as e:  # the engine failing is the lab's bug: counted, reported on stderr, exit 1
            _internal.lab_bug(f"cmd command {cmd.id}", e)
            writer("stderr")(f"lab engine error: {type(e).__name__}: {e}\r\n".encode())
            code = 1
        with self.cond:
            cmd.exit_code = int(code or 0)
            cmd.done = True
            self.cond.notify_all()

    def send(self, req: _soap.Request) -> str:
        for stream in req.body.findall("rsp:Send/rsp:Stream", NS):
            command_id = (stream.attrib.get("CommandId") or "").upper()
            cmd = self.commands.get(command_id)
            if cmd is None:
                raise _soap.command_not_found()
            if stream.text:
                cmd.stdin.put(base64.b64decode(stream.text))
            if stream.attrib.get("End", "").lower() == "true":
                cmd.stdin.end()
        return el("rsp:SendResponse")

    def receive(self, req: _soap.Request, timeout_s: float) -> str:
        desired = req.body.find("rsp:Receive/rsp:DesiredStream", NS)
        command_id = (desired.attrib.get("CommandId") or "").upper() if desired is not None else ""
        if not command_id:
            raise _soap.invalid_parameter()
        cmd = self.commands.get(command_id)
        if cmd is None:
            raise _soap.command_not_found()
        if not self.wait(lambda: bool(cmd.chunks) or cmd.done, timeout_s):
            if self.closed:
                raise _soap.shell_not_found(self.id)
            raise _soap.timed_out()
        budget = max(1024, (req.max_envelope_size or 153600) - RECEIVE_OVERHEAD) * 3 // 4
        parts: list[str] = []
        with self.cond:
            while cmd.chunks and budget > 0:
                stream, data = cmd.chunks[0]
                take, rest = data[:budget], data[budget:]
                if rest:
                    cmd.chunks[0] = (stream, rest)
                else:
                    cmd.chunks.pop(0)
                budget -= len(take) + 100
                parts.append(
                    el("rsp:Stream", base64.b64encode(take).decode(), {"Name": stream, "CommandId": command_id})
                )
            finished = cmd.done and not cmd.chunks
        if finished:
            for stream in ("stdout", "stderr"):
                parts.append(el("rsp:Stream", "", {"Name": stream, "CommandId": command_id, "End": "true"}))
            parts.append(
                el(
                    "rsp:CommandState",
                    attrs={"CommandId": command_id, "State": COMMAND_STATE_DONE},
                    children=el("rsp:ExitCode", str(cmd.exit_code)),
                )
            )
        else:
            parts.append(el("rsp:CommandState", attrs={"CommandId": command_id, "State": COMMAND_STATE_RUNNING}))
        return el("rsp:ReceiveResponse", children="".join(parts))

    def signal(self, req: _soap.Request) -> str:
        sig = req.body.find("rsp:Signal", NS)
        command_id = (sig.attrib.get("CommandId") or "").upper() if sig is not None else ""
        code = (sig.findtext("rsp:Code", default="", namespaces=NS) if sig is not None else "").strip()
        cmd = self.commands.get(command_id)
        if cmd is None:
            raise _soap.command_not_found()
        if code.lower() in (SIGNAL_TERMINATE.lower(), SIGNAL_CTRL_C, SIGNAL_CTRL_BREAK):
            # Windows ends the process and forgets the command; its stdin reader must not block forever.
            cmd.stdin.end()
            with self.cond:
                self.commands.pop(command_id, None)
                self.cond.notify_all()
        return el("rsp:SignalResponse")

    def close(self) -> None:
        for cmd in list(self.commands.values()):
            cmd.stdin.end()
        super().close()


def _is_path(executable: str) -> bool:
    return bool(re.match(r"^([A-Za-z]:)?[\\/]", executable)) or "\\" in executable


def parse_shell_create(req: _soap.Request) -> dict[str, t.Any]:
    """The rsp:Shell options of a Create request that the shell keeps."""
    shell = req.body.find("rsp:Shell", NS)
    if shell is None:
        shell = ET.Element(q("rsp", "Shell"))
    env = {v.attrib.get("Name", ""): v.text or "" for v in shell.findall("rsp:Environment/rsp:Variable", NS)}
    idle = shell.findtext("rsp:IdleTimeOut", default=None, namespaces=NS)
    codepage = req.options.get("WINRS_CODEPAGE")
    return {
        "shell_id": (shell.attrib.get("ShellId") or "").upper() or None,
        "input_streams": shell.findtext("rsp:InputStreams", default="stdin", namespaces=NS) or "stdin",
        "output_streams": shell.findtext("rsp:OutputStreams", default="stdout stderr", namespaces=NS) or "",
        "environment": env,
        "working_directory": shell.findtext("rsp:WorkingDirectory", default=None, namespaces=NS),
        "idle_timeout_s": _soap.parse_duration(idle) if idle else None,
        "no_profile": req.options.get("WINRS_NOPROFILE", "").upper() == "TRUE",
        "codepage": int(codepage) if codepage and codepage.isdigit() else None,
        "element": shell,
    }
