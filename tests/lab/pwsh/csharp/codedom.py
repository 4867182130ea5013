"""System.CodeDom.Compiler as Windows PowerShell 5.1 scripts drive it: CSharpCodeProvider, CompilerParameters,
TempFileCollection and the CompilerResults of CompileAssemblyFromSource (Add-CSharpType's 5.1 branch).

CompileAssemblyFromSource looks each unit up in the emulation table (registry.py). A unit without an
emulation fails the call, as a .NET method failing: `Exception calling "CompileAssemblyFromSource" with
"2" argument(s): "The lab engine cannot compile C#: ..."`.
"""

from __future__ import annotations

from typing import Any

from tests.lab.pwsh.csharp.registry import compile_sources, UnknownSource
from tests.lab.pwsh.dotnet_types import DotNetType, register, SimpleType
from tests.lab.pwsh.errors import method_exception, no_method
from tests.lab.pwsh.net.reflection import AssemblyObj
from tests.lab.pwsh.values import as_list, to_str, TypeRef


def assembly_for(rt: Any, types: list[DotNetType]) -> AssemblyObj:
    """The in-memory assembly CompiledAssembly / Add-Type -PassThru hand back: GetTypes lists the types."""
    refs = [TypeRef(t.full_name, canon=t.full_name, dotnet=t) for t in types]
    return AssemblyObj(rt, f"lab-emulated-{id(types):x}, Version=0.0.0.0, Culture=neutral, PublicKeyToken=null", "",
                       refs)


class CompilerParametersObj:
    ps_type = "System.CodeDom.Compiler.CompilerParameters"

    def __init__(self) -> None:
        self.GenerateExecutable = False
        self.GenerateInMemory = False
        self.TreatWarningsAsErrors = False
        self.IncludeDebugInformation = False
        self.TempFiles: object = None
        self.ReferencedAssemblies: list[object] = _StringCollection()
        self.CompilerOptions = ""
        self.OutputAssembly = ""
        self.WarningLevel = 4


class _StringCollection(list):  # type: ignore[type-arg]
    ps_type = "System.Collections.Specialized.StringCollection"

    def ps_call_first(self, name: str, args: list[object]) -> object:
        from tests.lab.pwsh.net.collections import NOT_HANDLED
        if name.lower() == "addrange":
            self.extend(as_list(args[0]))
            return None
        return NOT_HANDLED


class TempFileCollectionObj:
    ps_type = "System.CodeDom.Compiler.TempFileCollection"

    def __init__(self, temp_dir: str = "", keep: bool = False) -> None:
        self.TempDir = temp_dir
        self.KeepFiles = keep


class CompilerResultsObj:
    ps_type = "System.CodeDom.Compiler.CompilerResults"

    def __init__(self, assembly: AssemblyObj) -> None:
        self.Errors = _CompilerErrors()
        self.CompiledAssembly = assembly
        self.Output: list[str] = []
        self.NativeCompilerReturnValue = 0


class _CompilerErrors(list):  # type: ignore[type-arg]
    ps_type = "System.CodeDom.Compiler.CompilerErrorCollection"

    def ps_get(self, name: str) -> object:
        if name.lower() in ("haserrors", "haswarnings"):
            return False
        raise KeyError(name)


class CodeProviderObj:
    ps_type = "Microsoft.CSharp.CSharpCodeProvider"

    def __init__(self, rt: Any) -> None:
        self.rt = rt

    def ps_call(self, name: str, args: list[object]) -> object:
        if name.lower() == "compileassemblyfromsource":
            units = [to_str(u) for u in as_list(args[1])] if len(args) > 1 else []
            try:
                types = compile_sources(self.rt.host.process, units)
            except UnknownSource as e:
                raise method_exception(name, len(args), str(e)) from None
            return CompilerResultsObj(assembly_for(self.rt, types))
        if name.lower() == "dispose":
            return None
        raise no_method(self, name)


register(SimpleType("Microsoft.CSharp.CSharpCodeProvider", ctor=lambda rt, a: CodeProviderObj(rt)))
register(SimpleType("System.CodeDom.Compiler.CompilerParameters", ctor=lambda rt, a: CompilerParametersObj()))
register(SimpleType("System.CodeDom.Compiler.TempFileCollection",
                    ctor=lambda rt, a: TempFileCollectionObj(to_str(a[0]) if a else "", bool(a[1]) if len(a) > 1 else False)))
