"""CIM cmdlets over the lab host's CIM classes (tests/lab/pwsh/wmi.py): Get-CimInstance, Get-WmiObject,
New-CimInstance -ClientOnly and Invoke-CimMethod.

Errors are CIM's: an unknown class "Invalid class " (HRESULT 0x80041010), an unknown namespace "Invalid
namespace " (0x8004100e), both MetadataError records of the cmdlet. The lab's classes have no methods:
Invoke-CimMethod fails naming the class and method, as it would on a host without that provider.
"""

from __future__ import annotations

from tests.lab.pwsh.cmdlets.base import Cmdlet, cmdlet
from tests.lab.pwsh.values import as_list, to_str
from tests.lab.pwsh.wmi import CimInstanceObj, instances, query, WmiError

_HRESULTS = {"InvalidClass": "0x80041010", "InvalidNamespace": "0x8004100e", "InvalidQuery": "0x80041017",
             "NotFound": "0x80041002"}


class _CimQuery(Cmdlet):
    class_param = "ClassName"

    def process(self, item: object) -> None:
        rt = self.rt
        namespace = to_str(self.p.get("Namespace", "root/cimv2"))
        try:
            if "Query" in self.p:
                found = query(rt, to_str(self.p["Query"]), namespace)
            else:
                props = [to_str(p) for p in as_list(self.p.get("Property"))] or None
                where = to_str(self.p["Filter"]) if "Filter" in self.p else None
                found = instances(rt, to_str(self.p.get(self.class_param)), namespace, where, props)
        except WmiError as e:
            hresult = _HRESULTS.get(e.kind, "0x80041001")
            self.error(str(e), f"HRESULT {hresult}", "MetadataError" if e.kind != "InvalidQuery" else "InvalidArgument",
                       "Microsoft.Management.Infrastructure.CimException",
                       to_str(self.p.get(self.class_param) or self.p.get("Query")))
            return
        for instance in found:
            self.emit(instance)


@cmdlet("Get-CimInstance", "gcim", positional=("ClassName",),
        params=("Namespace", "Filter", "Property", "Query", "QueryDialect", "ComputerName", "CimSession",
                "OperationTimeoutSec"), switches=("KeyOnly", "Shallow"),
        noun="Microsoft.Management.Infrastructure.CimCmdlets.GetCimInstanceCommand")
class GetCimInstance(_CimQuery):
    pass


@cmdlet("Get-WmiObject", "gwmi", positional=("Class", "Property"),
        params=("Namespace", "Filter", "Query", "ComputerName"), switches=("List", "Recurse"))
class GetWmiObject(_CimQuery):
    class_param = "Class"


@cmdlet("New-CimInstance", positional=("ClassName", "Property"), params=("Namespace", "Key"), switches=("ClientOnly",),
        noun="Microsoft.Management.Infrastructure.CimCmdlets.NewCimInstanceCommand", should_process=True)
class NewCimInstance(Cmdlet):
    def process(self, item: object) -> None:
        if not self.should_process(to_str(self.p.get("ClassName")), "New-CimInstance"):
            return
        if not self.p.get("ClientOnly"):
            raise self.terminate("The lab host's CIM provider creates no instances; only -ClientOnly instances "
                                 "exist in the lab engine.", "LabUnsupportedCimCreate", "NotImplemented")
        props = self.p.get("Property")
        self.emit(CimInstanceObj(to_str(self.p.get("ClassName")), dict(props) if isinstance(props, dict) else {}))


@cmdlet("Invoke-CimMethod", positional=("ClassName", "MethodName"),
        params=("Namespace", "Arguments", "InputObject", "Query", "ComputerName"), aliases={"name": "MethodName"},
        noun="Microsoft.Management.Infrastructure.CimCmdlets.InvokeCimMethodCommand", should_process=True)
class InvokeCimMethod(Cmdlet):
    def process(self, item: object) -> None:
        namespace = to_str(self.p.get("Namespace", "root/cimv2")).replace("\\", "/").lower()
        class_name = to_str(self.p.get("ClassName"))
        method = to_str(self.p.get("MethodName"))
        if not self.should_process(class_name, f"Invoke-CimMethod: {method}"):
            return
        if namespace not in ("root/cimv2", "cimv2"):
            self.error("Invalid namespace ", "HRESULT 0x8004100e", "MetadataError",
                       "Microsoft.Management.Infrastructure.CimException", namespace)
            return
        self.error(f"The lab host's CIM class '{class_name}' has no method '{method}'.", "HRESULT 0x8004102e",
                   "MetadataError", "Microsoft.Management.Infrastructure.CimException", class_name)
