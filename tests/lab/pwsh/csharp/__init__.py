"""C# compiled at run time, emulated: each C# source a script compiles is looked up by the SHA-256 of its text.

The lab has no C# compiler, and the sources ansible's modules compile are mostly P/Invoke into Win32.
So the seam is where Windows PowerShell 5.1 compiles (`CSharpCodeProvider.CompileAssemblyFromSource`, which
Ansible.ModuleUtils.AddType.psm1's Add-CSharpType calls, and `Add-Type -TypeDefinition`): a source whose
hash is in the table defines the emulated types in the process (C# types are process-wide on Windows, like
the assembly they were compiled into); any other source fails, naming its namespace and hash, never a
compile that silently defines nothing. A new version of a source gets a new hash, so its emulation is
reviewed before it is trusted (docs/lab-engine.md, "What is emulated in Python").

registry.py holds the table and `compile_sources`; each emulation module registers itself with `@emulates(...)`
and importing this package loads them all.
"""

from __future__ import annotations

from tests.lab.pwsh.csharp.registry import compile_sources, EMULATIONS, UnknownSource
from tests.lab.pwsh.csharp import (  # noqa: F401,E402  (imported to register them)
    ansible_basic, async_util, become_util, codedom, link_util, module_inline, privilege, process_util, scmanager,
    setup_native,
)

__all__ = ["EMULATIONS", "UnknownSource", "compile_sources"]
