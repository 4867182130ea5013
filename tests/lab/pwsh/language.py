"""Constrained Language Mode: what it refuses on Windows, with Windows' errors, and what it still runs.

ConstrainedLanguage (what a WDAC or AppLocker lockdown policy imposes on every PowerShell) permits the
whole language and every cmdlet but limits the .NET types a script may touch to PowerShell's core types
(`CoreTypes` in PowerShell's TypeResolver.cs; enums and arrays of core types count too):
- a method call on an object of another type, or a static method of another type, fails with
  MethodInvocationNotSupportedInConstrainedLanguage (ToString is allowed on anything;
  Binders.cs IsAllowedInConstrainedLanguage);
- setting a property of another type fails with PropertySetterNotSupportedInConstrainedLanguage;
- `[T]::new()` and `New-Object T` of another type fail with CannotCreateTypeConstrainedLanguage;
- a cast to another type fails with ConversionSupportedOnlyToCoreTypes (LanguagePrimitives);
- Add-Type fails with CannotDefineNewType (AddType.cs).
Reading properties, static properties and every cmdlet stay allowed.
"""

from __future__ import annotations

from tests.lab.pwsh.conversions import ENUM_TYPES
from tests.lab.pwsh.errors import ErrorRecord, PSError, runtime_error, type_name_of
from tests.lab.pwsh.interpreter import Interpreter
from tests.lab.pwsh.values import canonical_type, TypeRef

CONSTRAINED = "ConstrainedLanguage"

# PowerShell 5.1's core types, by full .NET name (TypeResolver.cs CoreTypes, the ones the lab has values of).
CORE_TYPES = frozenset(name.lower() for name in (
    "System.Array", "System.Boolean", "System.Byte", "System.Char", "System.DateTime", "System.Decimal",
    "System.Double", "System.Single", "System.Guid", "System.Collections.Hashtable", "System.Int32", "System.Int16",
    "System.Int64", "System.SByte", "System.String", "System.UInt16", "System.UInt32", "System.UInt64",
    "System.Object[]", "System.Collections.Specialized.OrderedDictionary",
    "System.Management.Automation.PSObject", "System.Management.Automation.PSCustomObject",
    "System.Management.Automation.PSCredential", "System.Management.Automation.PSPrimitiveDictionary",
    "System.Management.Automation.PSReference", "System.Management.Automation.SwitchParameter",
    "System.Management.Automation.PSListModifier", "System.Management.Automation.WildcardPattern",
    "System.Text.RegularExpressions.Regex", "System.Globalization.CultureInfo", "System.Numerics.BigInteger",
    "System.Security.SecureString", "System.TimeSpan", "System.Uri", "System.Version", "System.Void",
    "System.Net.IPAddress", "System.Net.Mail.MailAddress", "System.Xml.XmlDocument",
    "System.Security.Cryptography.X509Certificates.X509Certificate",
    "System.Security.Cryptography.X509Certificates.X500DistinguishedName",
))


def constrained(rt: Interpreter) -> bool:
    return rt.host.language_mode == CONSTRAINED


def is_core_type(full_name: str) -> bool:
    """A core type, an enum, or an array of core types (CoreTypes.Contains)."""
    low = canonical_type(full_name).lower()
    if low in CORE_TYPES or low in ENUM_TYPES:
        return True
    return low.endswith("[]") and is_core_type(low[:-2])


def check_method(rt: Interpreter, target: object, name: str) -> None:
    """Refuses a method call CLM refuses: on a non-core object, or a static method of a non-core type."""
    if not constrained(rt) or name.lower() == "tostring":
        return
    type_name = target.canon if isinstance(target, TypeRef) else type_name_of(target)
    if not is_core_type(type_name):
        raise runtime_error("Cannot invoke method. Method invocation is supported only on core types in this "
                            "language mode.", "MethodInvocationNotSupportedInConstrainedLanguage", "InvalidOperation")


def check_property_set(rt: Interpreter, target: object) -> None:
    if constrained(rt) and not is_core_type(type_name_of(target)):
        raise runtime_error("Cannot set property. Property setting is supported only on core types in this "
                            "language mode.", "PropertySetterNotSupportedInConstrainedLanguage", "InvalidOperation")


def check_create(rt: Interpreter, type_name: str, cmdlet: str | None = None) -> None:
    """`[T]::new()` (a runtime error) or `New-Object T` (the cmdlet's PermissionDenied error) of a non-core type."""
    if not constrained(rt) or is_core_type(type_name):
        return
    message = "Cannot create type. Only core types are supported in this language mode."
    if cmdlet is None:
        raise runtime_error(message, "CannotCreateTypeConstrainedLanguage", "InvalidOperation")
    raise PSError(rt.fill(ErrorRecord(
        message, category="PermissionDenied",
        fq_error_id=f"CannotCreateTypeConstrainedLanguage,Microsoft.PowerShell.Commands.{cmdlet}",
        exception_type="System.Management.Automation.PSNotSupportedException", command_name="New-Object")))


def check_conversion(rt: Interpreter, type_name: str) -> None:
    """A cast to a non-core type (LanguagePrimitives.ThrowInvalidConversionException)."""
    if constrained(rt) and not is_core_type(type_name):
        raise PSError(rt.fill(ErrorRecord(
            f'Cannot convert value to type "{canonical_type(type_name)}". Only core types are supported in this '
            f"language mode.", category="InvalidArgument", fq_error_id="ConversionSupportedOnlyToCoreTypes",
            exception_type="System.Management.Automation.PSInvalidCastException")))
