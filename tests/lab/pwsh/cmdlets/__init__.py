"""Built-in cmdlets of the lab engine, one module per noun family; base.py holds the shape of one.

Importing this package registers every cmdlet (each module's `@cmdlet` declarations run on import);
the interpreter finds them with `lookup_cmdlet`.
"""

from __future__ import annotations

from tests.lab.pwsh.cmdlets import (  # noqa: F401  (imported to register their cmdlets)
    addtype, cim, clock, content, conversion, items, location, modules, objects, output, registry, service, session,
    state,
)
from tests.lab.pwsh.cmdlets.base import CMDLETS, Cmdlet, cmdlet, lookup_cmdlet
from tests.lab.pwsh.cmdlets.conversion import from_json

__all__ = ["CMDLETS", "Cmdlet", "cmdlet", "from_json", "lookup_cmdlet"]
