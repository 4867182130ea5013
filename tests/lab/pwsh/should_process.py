"""-WhatIf: ShouldProcess as cmdlets and advanced functions ask it (about_CommonParameters, about_Preference_Variables).

A cmdlet that supports ShouldProcess takes -WhatIf; without it, $WhatIfPreference decides (an advanced function
called with -WhatIf sets it in its own scope, so the cmdlets it calls inherit it). When WhatIf is on, the
cmdlet changes nothing and the host gets one line per change it would have made:
    What if: Performing the operation "<action>" on target "<target>".
(MshCommandRuntime.DoShouldProcess writes it with the host's UI; the action and target texts are each cmdlet's
own resource strings, e.g. New-Item's "Create Directory" on "Destination: C:\\x".)
-Confirm is not modelled: nothing in the lab answers a prompt, and $ConfirmPreference stays High.
"""

from __future__ import annotations

from typing import Any

from tests.lab.pwsh.values import SWITCH_PRESENT, to_bool


def what_if(rt: Any, explicit: object = None) -> bool:
    """Whether WhatIf is on: the command's own -WhatIf if given, else $WhatIfPreference where it runs."""
    if explicit is not None:
        return explicit is SWITCH_PRESENT or to_bool(explicit)
    scope = rt.scope.find("whatifpreference")
    return scope is not None and to_bool(scope.vars["whatifpreference"])


def should_process(rt: Any, target: str, action: str, explicit: object = None) -> bool:
    """ShouldProcess(target, action): False (after the host line) when WhatIf is on, else True."""
    if what_if(rt, explicit):
        rt.streams.host_write(f'What if: Performing the operation "{action}" on target "{target}".')
        return False
    return True
