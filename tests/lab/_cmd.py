"""cmd.exe's subset as the lab host runs it (docs/lab-engine.md, "cmd subset").

A CmdShell runs on a process of the host (the Engine that made it): its environment, file system, native
commands and powershell.exe. It sees that process through `CmdProcess`, what it needs of an Engine.
"""

from __future__ import annotations

import pathlib
import re
import typing as t
from collections.abc import Callable, Iterable

from tests.lab import pwsh
from tests.lab.pwsh.command_line import split_tail


class CmdProcess(t.Protocol):
    """What cmd.exe needs of the process it runs in (tests/lab/_engine.py Engine)."""

    root: pathlib.Path
    computer_name: str
    user: str
    env: dict[str, str]
    process_cwd: str

    def host_context(self) -> pwsh.HostContext: ...

    def run_powershell_exe(self, argv: list[str], stdin: Iterable[bytes], stdout: Callable[[bytes], None],
                           stderr: Callable[[bytes], None], cwd: str | None = None) -> int: ...


# ---- cmd.exe subset ------------------------------------------------------------------------------

_NOT_RECOGNIZED = "'{0}' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n"
_PATH_NOT_FOUND = b"The system cannot find the path specified.\r\n"


class CmdShell:
    """cmd.exe's subset: echo, type, dir, set, ver, cd, hostname, whoami, exit [/b] N, powershell, cmd /c,
    `&`, `&&`, `||`, `>`/`>>`/`2>`/`2>&1` redirection and %VAR% expansion. Output in code page 437."""

    MAX_DEPTH = 8

    def __init__(self, engine: CmdProcess, stdin: Iterable[bytes], stdout: Callable[[bytes], None],
                 stderr: Callable[[bytes], None], depth: int = 0) -> None:
        self.engine = engine
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.depth = depth
        self.cwd = getattr(engine, "process_cwd", f"C:\\Users\\{engine.user}")
        self.errorlevel = 0

    def expand(self, text: str) -> str:
        def rep(m: re.Match[str]) -> str:
            name = m.group(1)
            if name.lower() == "errorlevel":
                return str(self.errorlevel)
            if name.lower() == "cd":
                return self.cwd
            for k, v in self.engine.env.items():
                if k.lower() == name.lower():
                    return v
            return m.group(0)
        return re.sub(r"%([^%\s]+)%", rep, text)

    @staticmethod
    def split_ops(line: str) -> list[tuple[str, str]]:
        """Splits on &, && and || outside quotes: [(operator_before, command)]."""
        parts: list[tuple[str, str]] = []
        cur: list[str] = []
        op = ""
        quoted = False
        i = 0
        while i < len(line):
            c = line[i]
            if c == '"':
                quoted = not quoted
            if not quoted and c == "^" and i + 1 < len(line):
                cur.append(line[i:i + 2])
                i += 2
                continue
            if not quoted and (line.startswith("&&", i) or line.startswith("||", i)):
                parts.append((op, "".join(cur)))
                op, cur = line[i:i + 2], []
                i += 2
                continue
            if not quoted and c == "&" and not (i > 0 and line[i - 1] == ">"):
                parts.append((op, "".join(cur)))
                op, cur = "&", []
                i += 1
                continue
            cur.append(c)
            i += 1
        parts.append((op, "".join(cur)))
        return [(o, p) for o, p in parts if p.strip()]

    def run_line(self, line: str) -> int:
        if self.depth > self.MAX_DEPTH:
            self.stderr(b"The lab's cmd nesting bound was reached.\r\n")
            return 1
        rc = 0
        for op, part in self.split_ops(line):
            if op == "&&" and rc != 0 or op == "||" and rc == 0:
                continue
            try:
                rc = self.run_simple(part.lstrip())
            except _CmdExit as e:
                return e.code
            self.errorlevel = rc
        return rc

    def run_simple(self, text: str) -> int:
        text = self.expand(text)
        out, err = self.stdout, self.stderr
        # redirections
        redir = re.compile(r'(\d?)(>>|>)(&\d|\s*"[^"]*"|\s*[^\s&|<>]+)')
        stripped = text
        for m in list(redir.finditer(text)):
            stream, kind, target = m.group(1) or "1", m.group(2), m.group(3).strip().strip('"')
            if target == "&1":
                dest = self.stdout
            elif target == "&2":
                dest = self.stderr
            elif target.lower() == "nul":
                dest = lambda b: None  # noqa: E731
            else:
                hp = self.host_path(target)
                if hp is None or not hp.parent.is_dir():
                    self.stderr(_PATH_NOT_FOUND)
                    return 1
                if kind == ">":
                    hp.write_bytes(b"")

                def dest(b: bytes, _hp: pathlib.Path = hp) -> None:
                    with open(_hp, "ab") as f:
                        f.write(b)
            if stream == "2":
                err = dest
            else:
                out = dest
            stripped = stripped.replace(m.group(0), "", 1)
        text = stripped.lstrip()  # cmd keeps the blanks before a redirection: `echo a > f` writes "a "
        if not text:
            return 0
        m = re.match(r'^("[^"]*"|[^\s/]+)(.*)$', text, re.S)
        assert m
        name = m.group(1).strip('"')
        rest = m.group(2)
        low = name.lower()
        base = re.split(r"[\\/]", low)[-1]
        args = rest.strip()
        enc = "cp437"

        def w(s: str) -> None:
            out(s.encode(enc, errors="replace"))

        if low == "echo." or (low == "echo" and not args):
            w("\r\n" if low == "echo." else "ECHO is on.\r\n")
            return 0
        if low == "echo":
            w(rest[1:] + "\r\n" if rest.startswith(" ") else rest + "\r\n")
            return 0
        if low in ("type",):
            hp = self.host_path(args.strip('"'))
            if hp is None:
                err(_PATH_NOT_FOUND)
                return 1
            if not hp.is_file():
                # cmd tells a missing directory on the way from a missing file
                missing = b"file" if hp.parent.is_dir() else b"path"
                err(b"The system cannot find the " + missing + b" specified.\r\n")
                return 1
            out(hp.read_bytes())
            return 0
        if low == "dir":
            return self.dir(args, w, err)
        if low == "ver":
            w("\r\nMicrosoft Windows [Version 10.0.17763.1007]\r\n")
            return 0
        if low in ("cd", "chdir") and not args:
            w(self.cwd + "\r\n")
            return 0
        if low in ("cd", "chdir"):
            hp = self.host_path(args.strip('"').removeprefix("/d ").strip())
            if hp is None or not hp.is_dir():
                err(_PATH_NOT_FOUND)
                return 1
            self.cwd = pwsh.FileSystem(self.engine.root).win_of(hp)
            return 0
        if low == "set":
            if not args:
                # cmd.exe defines PROMPT in its own environment when it starts without one
                listing = {"PROMPT": "$P$G", **self.engine.env} if not any(
                    k.lower() == "prompt" for k in self.engine.env) else dict(self.engine.env)
                for k in sorted(listing, key=str.lower):
                    w(f"{k}={listing[k]}\r\n")
                return 0
            if "=" in args:
                k, v = args.split("=", 1)
                for key in list(self.engine.env):
                    if key.lower() == k.lower():
                        del self.engine.env[key]
                if v:
                    self.engine.env[k] = v
                return 0
            found = [k for k in self.engine.env if k.lower().startswith(args.lower())]
            if not found:
                err(f"Environment variable {args} not defined\r\n".encode(enc, errors="replace"))
                return 1
            for k in sorted(found, key=str.lower):
                w(f"{k}={self.engine.env[k]}\r\n")
            return 0
        if low == "exit":
            parts = args.split()
            is_b = bool(parts) and parts[0].lower() == "/b"
            if is_b:
                parts = parts[1:]
            try:
                code = int(parts[0]) if parts else (self.errorlevel if is_b else 0)
            except ValueError:
                code = 0
            raise _CmdExit(code)
        if base in ("hostname", "hostname.exe"):
            if args:
                err(b"sethostname: Use the Network Control Panel Applet to set hostname.\r\n")
                return 1
            w(self.engine.computer_name + "\r\n")
            return 0
        if base in ("whoami", "whoami.exe"):
            if args:
                err(f"ERROR: Invalid argument/option - '{args.split()[0]}'.\r\nType \"WHOAMI /?\" for usage.\r\n"
                    .encode(enc, errors="replace"))
                return 1
            w(f"{self.engine.computer_name.lower()}\\{self.engine.user.lower()}\r\n")
            return 0
        if base in ("cmd", "cmd.exe"):
            return self.cmd_exe(rest, out, err)
        if base in ("powershell", "powershell.exe", "pwsh", "pwsh.exe"):
            return self.engine.run_powershell_exe(split_tail(rest), self.stdin, out, err, cwd=self.cwd)
        native = self.engine.host_context().native_command(name)
        if native is not None:  # the host's other executables (shutdown.exe)
            rc, lines, errors = native(self.engine.host_context(), self.cwd, split_tail(args))
            for line in lines:
                w(line + "\r\n")
            for line in errors:
                err((line + "\r\n").encode(enc, errors="replace"))
            return rc
        err(_NOT_RECOGNIZED.format(name).encode(enc, errors="replace"))
        return 9009

    def host_path(self, path: str) -> pathlib.Path | None:
        """The lab file behind a cmd path (relative to the current directory); None when it leaves the host's C:."""
        try:
            return pwsh.FileSystem(self.engine.root).host_path(path, self.cwd)
        except pwsh.PathOutsideRoot:
            return None

    def cmd_exe(self, rest: str, out: Callable[[bytes], None], err: Callable[[bytes], None]) -> int:
        """cmd.exe started with the arguments `rest`: `/c line` (or `/k`) runs the line in a new cmd."""
        mm = re.match(r"^\s*(?:/[a-bd-jl-z]\S*\s+)*/[ck]\s+(.*)$", rest, re.I | re.S)
        if not mm:
            out("Microsoft Windows [Version 10.0.17763.1007]\r\n(c) 2018 Microsoft Corporation. All rights "
                "reserved.\r\n".encode("cp437"))
            return 0
        # cmd keeps trailing blanks of its /c line (`cmd /c echo a || ...` runs "echo a "), but drops quotes
        inner = mm.group(1).lstrip()
        quoted = inner.rstrip()
        if quoted.startswith('"') and quoted.endswith('"') and quoted.count('"') == 2:
            inner = quoted[1:-1]
        return CmdShell(self.engine, self.stdin, out, err, self.depth + 1).run_line(inner)

    def dir(self, args: str, w: Callable[[str], None], err: Callable[[bytes], None]) -> int:
        import datetime as dt
        fs = pwsh.FileSystem(self.engine.root)
        bare = "/b" in args.lower().split()
        hp = self.host_path(" ".join(a for a in args.split() if not a.startswith("/")).strip('"') or ".")
        if hp is None:
            err(_PATH_NOT_FOUND)
            return 1
        if not hp.exists():
            w(" Volume in drive C has no label.\r\n Volume Serial Number is 4C4B-1D2E\r\n\r\n")
            err(b"File Not Found\r\n")
            return 1
        entries = sorted(hp.iterdir(), key=lambda e: e.name.lower()) if hp.is_dir() else [hp]
        if bare:
            for e in entries:
                w(e.name + "\r\n")
            return 0
        w(" Volume in drive C has no label.\r\n Volume Serial Number is 4C4B-1D2E\r\n\r\n")
        w(f" Directory of {fs.win_of(hp if hp.is_dir() else hp.parent)}\r\n\r\n")
        files = dirs = size = 0

        def stamp(p: pathlib.Path) -> str:
            return dt.datetime.fromtimestamp(p.stat().st_mtime).strftime("%m/%d/%Y  %I:%M %p")
        if hp.is_dir():
            for dot in (".", ".."):
                w(f"{stamp(hp)}    <DIR>          {dot}\r\n")
                dirs += 1
        for e in entries:
            if e.is_dir():
                dirs += 1
                w(f"{stamp(e)}    <DIR>          {e.name}\r\n")
            else:
                files += 1
                n = e.stat().st_size
                size += n
                w(f"{stamp(e)}    {n:>14,} {e.name}\r\n")
        w(f"{files:>16} File(s) {size:>14,} bytes\r\n{dirs:>16} Dir(s)  53,687,091,200 bytes free\r\n")
        return 0


class _CmdExit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code
