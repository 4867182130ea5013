""".NET types of the Base Class Library and of PowerShell's engine that the subset implements as registered types
(tests/lab/pwsh/dotnet_types.py), one module per family; importing this package registers them.

    console       [Console] (Out, SetOut, encodings), StringWriter, TextWriter, StringBuilder
    collections   List`1, HashSet`1, Dictionary`2, ArrayList, StringComparer, Linq.Enumerable
    reflection    [T].Name/.Assembly/.GetField, assemblies, TypeAccelerators
    primitives    IntPtr, Char, Regex objects, TimeSpan, DateTime statics, CultureInfo, TimeZoneInfo, Array
    io            [IO.Path]/[IO.File]/[IO.Directory] members files.py lacks, FileAttributes, SearchOption
    environment   [Environment] variables by target (Process/User/Machine), OSVersion
    network       NetworkInterface, IPGlobalProperties, IPAddress (the lab host's adapters)
    principal     SecurityIdentifier, NTAccount, WindowsIdentity, WindowsPrincipal, AccountManagement groups
    automation    ErrorCategory, ErrorDetails, exception classes, PSScriptMethod, NullString, SystemPolicy
"""

from __future__ import annotations

from tests.lab.pwsh.net import (  # noqa: F401  (imported to register their types)
    automation, collections, console, environment, io, network, primitives, principal, reflection,
)
