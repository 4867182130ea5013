"""Values as text, the way Out-String/Out-Default and the console host render them (simplified format views).

Used for powershell.exe's redirected stdout, Out-String, Out-File and `>` redirection, and for what
Streams.output receives over PSRP (display_value).
"""

from __future__ import annotations

import datetime as dt

from tests.lab.pwsh.errors import ErrorRecord
from tests.lab.pwsh.values import PSObject, to_str


def _cell(v: object) -> str:
    if isinstance(v, (list, tuple)):
        inner = ", ".join(to_str(x) for x in v[:4])
        return "{" + inner + ("..." if len(v) > 4 else "") + "}"
    return to_str(v)


def format_for_display(values: list[object]) -> str:
    """Text of values the way Out-String renders them, lines joined by CRLF (no trailing newline)."""
    lines: list[str] = []
    i = 0
    while i < len(values):
        v = values[i]
        if isinstance(v, dict):
            lines += ["", f"{'Name':<30} Value", f"{'----':<30} -----"]
            for k, x in v.items():
                lines.append(f"{to_str(k):<30} {_cell(x)}".rstrip())
            lines.append("")
        elif isinstance(v, PSObject):
            group = [v]
            while i + 1 < len(values) and isinstance(values[i + 1], PSObject) and \
                    list(values[i + 1].props.keys()) == list(v.props.keys()):  # type: ignore[union-attr]
                i += 1
                group.append(values[i])  # type: ignore[arg-type]
            keys = list(v.props.keys())
            if len(keys) >= 5:
                width = max(len(to_str(k)) for k in keys)
                for o in group:
                    lines.append("")
                    for k in keys:
                        lines.append(f"{to_str(k):<{width}} : {_cell(o.props[k])}".rstrip())
                lines.append("")
            else:
                cols = [[to_str(k)] + [_cell(o.props[k]) for o in group] for k in keys]
                widths = [max(len(c) for c in col) for col in cols]
                lines.append("")
                lines.append(" ".join(f"{c[0]:<{w}}" for c, w in zip(cols, widths)).rstrip())
                lines.append(" ".join(("-" * len(c[0])).ljust(w) for c, w in zip(cols, widths)).rstrip())
                for r in range(1, len(group) + 1):
                    lines.append(" ".join(f"{c[r]:<{w}}" for c, w in zip(cols, widths)).rstrip())
                lines.append("")
        elif getattr(v, "ps_table_view", None):
            # a type with a default table view (format.ps1xml): fixed widths, a longer value cut with "..."
            view = v.ps_table_view  # type: ignore[attr-defined]
            group = [v]
            while i + 1 < len(values) and type(values[i + 1]) is type(v):
                i += 1
                group.append(values[i])

            def cell(text: str, width: int) -> str:
                return text if len(text) <= width else text[:width - 3] + "..."

            lines.append("")
            lines.append(" ".join(f"{title:<{w}}" for title, w, _ in view))
            lines.append(" ".join(f"{'-' * len(title):<{w}}" for title, w, _ in view))
            for o in group:
                lines.append(" ".join(f"{cell(to_str(getattr(o, prop)), w):<{w}}" for _, w, prop in view))
            lines += ["", ""]
        elif isinstance(v, ErrorRecord):
            lines.append(render_error_text(v))
        elif isinstance(v, (list, tuple)):
            lines.append(format_for_display(list(v)))
        else:
            lines.append(to_str(v))
        i += 1
    return "\r\n".join(lines)


def render_error_text(rec: object) -> str:
    """An error the way the console host prints it (also what goes in CLIXML stderr)."""
    message = getattr(rec, "message")
    cmd = getattr(rec, "command_name")
    pos = getattr(rec, "position")
    category = getattr(rec, "category")
    fq = getattr(rec, "fq_error_id")
    exc = getattr(rec, "exception_type")
    target = getattr(rec, "target")
    reason = exc.rsplit(".", 1)[-1]
    if cmd in ("hostname.exe", "whoami.exe") and fq.startswith("NativeCommandError"):
        return message
    first = f"{cmd} : {message}" if cmd else message
    tpart = f"({target}:String)" if target else "(:)"
    if target and len(target) > 40:
        tpart = f"({target[:15]}...{target[-15:]}:String)"
    cat = f"{category}: {tpart} [{cmd or ''}], {reason}"
    parts = [first]
    if pos:
        parts.append(pos.replace("\r\n", "\n").replace("\n", "\r\n"))
    parts.append(f"    + CategoryInfo          : {cat}")
    parts.append(f"    + FullyQualifiedErrorId : {fq}")
    parts.append(" ")
    return "\r\n".join(parts)


def display_value(v: object) -> object:
    """What Streams.output receives: str/int/bool/None/float/list/dict; other objects as their string."""
    if v is None or isinstance(v, (str, bool, int, float)):
        return v
    if isinstance(v, (list, tuple)):
        return [display_value(x) for x in v]
    if isinstance(v, (bytes, bytearray)):
        return list(v)
    if isinstance(v, PSObject):
        return {to_str(k): display_value(x) for k, x in v.props.items()}
    if isinstance(v, dict):
        return {to_str(k): display_value(x) for k, x in v.items()}
    if isinstance(v, dt.datetime):
        return v.strftime("%A, %B %d, %Y %I:%M:%S %p").replace(" 0", " ")
    if isinstance(v, ErrorRecord):
        return v.message
    properties = getattr(v, "ps_properties", None)
    if callable(properties):
        return {k: display_value(x) for k, x in properties().items()}
    return to_str(v)
