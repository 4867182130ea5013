"""Time cmdlets: Get-Date and Start-Sleep (bounded by limits.MAX_SLEEP_SECONDS)."""

from __future__ import annotations

import datetime as dt
import time

from tests.lab.pwsh import limits
from tests.lab.pwsh.cmdlets.base import Cmdlet, cmdlet
from tests.lab.pwsh.conversions import convert_value, format_date
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


@cmdlet("Get-Date", positional=("Date",), params=("Format", "UFormat"))
class GetDate(Cmdlet):
    def process(self, item: object) -> None:
        d = self.p.get("Date")
        d = convert_value(self.rt, d, "datetime") if d is not None else dt.datetime.now().astimezone()
        if "Format" in self.p:
            self.emit(format_date(d, to_str(self.p["Format"])))  # type: ignore[arg-type]
        elif "UFormat" in self.p:
            self.emit(d.strftime(to_str(self.p["UFormat"])))  # type: ignore[union-attr]
        else:
            self.emit(d)
