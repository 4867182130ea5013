"""Time cmdlets: Get-Date, New-TimeSpan and Start-Sleep (bounded by limits.MAX_SLEEP_SECONDS)."""

from __future__ import annotations

import datetime as dt
import time

from tests.lab.pwsh import limits
from tests.lab.pwsh.cmdlets.base import Cmdlet, cmdlet
from tests.lab.pwsh.conversions import convert_value, format_date
from tests.lab.pwsh.dotnet_objects import TimeSpanValue
from tests.lab.pwsh.values import to_str


@cmdlet("Start-Sleep", "sleep", positional=("Seconds",), params=("Milliseconds",),
        aliases={"s": "Seconds", "m": "Milliseconds"})
class StartSleep(Cmdlet):
    def process(self, item: object) -> None:
        secs = self.rt.to_num(self.p["Seconds"]) if "Seconds" in self.p else \
            self.rt.to_num(self.p.get("Milliseconds", 0)) / 1000.0
        if secs < 0:
            raise self.terminate(f"Cannot validate argument on parameter 'Seconds'. The {secs} argument is less than "
                                 f"the minimum allowed range of 0.", "ParameterArgumentValidationError")
        time.sleep(min(float(secs), limits.MAX_SLEEP_SECONDS))


@cmdlet("Get-Date", positional=("Date",),
        params=("Format", "UFormat", "Year", "Month", "Day", "Hour", "Minute", "Second", "Millisecond", "DisplayHint"))
class GetDate(Cmdlet):
    def process(self, item: object) -> None:
        d = self.p.get("Date")
        d = convert_value(self.rt, d, "datetime") if d is not None else dt.datetime.now().astimezone()
        parts = {k.lower(): self.rt.to_int(self.p[k]) for k in ("Year", "Month", "Day", "Hour", "Minute", "Second")
                 if k in self.p}
        if parts or "Millisecond" in self.p:
            if "Millisecond" in self.p:
                parts["microsecond"] = self.rt.to_int(self.p["Millisecond"]) * 1000
            d = d.replace(**parts)  # type: ignore[union-attr]
        if "Format" in self.p:
            self.emit(format_date(d, to_str(self.p["Format"])))  # type: ignore[arg-type]
        elif "UFormat" in self.p:
            self.emit(uformat(d, to_str(self.p["UFormat"])))  # type: ignore[arg-type]
        else:
            self.emit(d)


@cmdlet("New-TimeSpan", positional=("Start", "End"), params=("Days", "Hours", "Minutes", "Seconds", "Milliseconds"))
class NewTimeSpan(Cmdlet):
    def process(self, item: object) -> None:
        rt = self.rt
        if "Start" in self.p or "End" in self.p:
            start = convert_value(rt, self.p["Start"], "datetime") if "Start" in self.p else dt.datetime.now()
            end = convert_value(rt, self.p["End"], "datetime") if "End" in self.p else dt.datetime.now()
            self.emit(TimeSpanValue((_aware(end) - _aware(start)).total_seconds()))  # type: ignore[arg-type]
            return
        seconds = sum(rt.to_num(self.p.get(k, 0)) * f for k, f in (("Days", 86400), ("Hours", 3600),
                                                                   ("Minutes", 60), ("Seconds", 1),
                                                                   ("Milliseconds", 0.001)))
        self.emit(TimeSpanValue(seconds))


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.astimezone()


def uformat(d: dt.datetime, fmt: str) -> str:
    """Get-Date -UFormat as Windows PowerShell 5.1 formats: a leading '+' is dropped, %s is the seconds since
    1970-01-01 UTC with their fraction (5.1 did not round them), %Z the UTC offset's hours ("+00")."""
    if fmt.startswith("+"):
        fmt = fmt[1:]
    out: list[str] = []
    i = 0
    while i < len(fmt):
        c = fmt[i]
        if c != "%" or i + 1 >= len(fmt):
            out.append(c)
            i += 1
            continue
        token = fmt[i + 1]
        i += 2
        if token == "s":
            moment = d if d.tzinfo is not None else d.astimezone()
            seconds = (moment - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)).total_seconds()
            out.append(repr(round(seconds, 5)).rstrip("0").rstrip("."))
        elif token == "Z":
            offset = d.utcoffset() if d.tzinfo is not None else dt.datetime.now().astimezone().utcoffset()
            hours = int(offset.total_seconds() // 3600) if offset is not None else 0
            out.append(f"{'-' if hours < 0 else '+'}{abs(hours):02d}")
        elif token == "k":
            out.append(f"{d.hour:2d}")
        elif token == "l":
            out.append(f"{d.hour % 12 or 12:2d}")
        else:
            out.append(d.strftime("%" + token))
    return "".join(out)
