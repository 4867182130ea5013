"""SOAP/WS-Management envelope helpers and the WS-Management faults as Windows sends them.

Parsing uses ElementTree; answers are written as text because ElementTree's namespace
prefixes are process-global (``register_namespace``) and pypsrp, running in the same test
process, registers different ones. Windows answers with the prefixes s, a, x, w, rsp, p.

Fault codes, subcodes and texts come from the recorded exchanges in
tests/integration/lab_wsman/transcripts, MS-WSMV 3.1.4.5.2.1 (QuotaLimit) and the messages real
Windows hosts print for the MaxShellsPerUser / MaxConcurrentOperationsPerUser quotas.
"""

from __future__ import annotations

import dataclasses
import re
import typing as t
import uuid
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "wsa": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "wsman": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "wsmv": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "wsen": "http://schemas.xmlsoap.org/ws/2004/09/enumeration",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
    "pwsh": "http://schemas.microsoft.com/powershell",
    "cfg": "http://schemas.microsoft.com/wbem/wsman/1/config",
}

ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
SHELL_NS = NS["rsp"]
CMD_RESOURCE_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
SHELL_RESOURCE_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
PSRP_RESOURCE_PREFIX = "http://schemas.microsoft.com/powershell/"
CONFIG_RESOURCE_URI = "http://schemas.microsoft.com/wbem/wsman/1/config"
FAULT_ACTION = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
ADDRESSING_FAULT_ACTION = "http://schemas.xmlsoap.org/ws/2004/08/addressing/fault"

ACTIONS = {
    "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create": "Create",
    "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete": "Delete",
    "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get": "Get",
    "http://schemas.xmlsoap.org/ws/2004/09/transfer/Put": "Put",
    "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate": "Enumerate",
    "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Pull": "Pull",
    f"{SHELL_NS}/Command": "Command",
    f"{SHELL_NS}/Send": "Send",
    f"{SHELL_NS}/Receive": "Receive",
    f"{SHELL_NS}/Signal": "Signal",
    f"{SHELL_NS}/Connect": "Connect",
    f"{SHELL_NS}/Disconnect": "Disconnect",
    f"{SHELL_NS}/Reconnect": "Reconnect",
}

_ENVELOPE_OPEN = (
    '<s:Envelope xml:lang="en-US" xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
    'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
    'xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer" '
    'xmlns:e="http://schemas.xmlsoap.org/ws/2004/09/enumeration" '
    'xmlns:n="http://schemas.xmlsoap.org/ws/2004/09/enumeration" '
    'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" '
    'xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell" '
    'xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd">'
)


def q(prefix: str, name: str) -> str:
    """Clark notation for an element name: q('rsp', 'Shell') -> '{...shell}Shell'."""
    return f"{{{NS[prefix]}}}{name}"


@dataclasses.dataclass
class Request:
    """The parts of a WS-Management request the service dispatches on."""

    action: str
    action_name: str
    resource_uri: str
    message_id: str
    to: str
    selectors: dict[str, str]
    options: dict[str, str]
    operation_timeout: str | None
    max_envelope_size: int | None
    session_id: str | None
    body: ET.Element
    raw_size: int

    @property
    def shell_id(self) -> str | None:
        value = self.selectors.get("ShellId")
        return value.upper() if value else None

    def body_child(self) -> ET.Element | None:
        return self.body[0] if len(self.body) else None


class ParseError(Exception):
    """The request is not a SOAP envelope the service can read."""


def parse_request(data: bytes) -> Request:
    """Parse a SOAP request into a Request (raises ParseError on malformed XML)."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise ParseError(str(e)) from e
    header = root.find("s:Header", NS)
    body = root.find("s:Body", NS)
    if root.tag != q("s", "Envelope") or header is None or body is None:
        raise ParseError("not a SOAP 1.2 envelope")

    def text(path: str) -> str | None:
        el = header.find(path, NS)
        return el.text.strip() if el is not None and el.text else None

    action = text("wsa:Action") or ""
    selectors = {
        sel.attrib.get("Name", ""): (sel.text or "")
        for sel in header.findall("wsman:SelectorSet/wsman:Selector", NS)
    }
    options = {
        opt.attrib.get("Name", ""): (opt.text or "") for opt in header.findall("wsman:OptionSet/wsman:Option", NS)
    }
    max_env = text("wsman:MaxEnvelopeSize")
    return Request(
        action=action,
        action_name=ACTIONS.get(action, action.rsplit("/", 1)[-1] or "Unknown"),
        resource_uri=text("wsman:ResourceURI") or "",
        message_id=text("wsa:MessageID") or "",
        to=text("wsa:To") or "",
        selectors=selectors,
        options=options,
        operation_timeout=text("wsman:OperationTimeout"),
        max_envelope_size=int(max_env) if max_env and max_env.isdigit() else None,
        session_id=text("wsmv:SessionId"),
        body=body,
        raw_size=len(data),
    )


_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def parse_duration(value: str) -> float | None:
    """xs:duration (PT20S, PT7200.000S, P0DT0H1M0S) -> seconds, None when invalid or negative."""
    m = _DURATION.match(value.strip())
    if not m or value.strip() in ("P", "PT"):
        return None
    days, hours, minutes, seconds = m.groups()
    return int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)


def format_duration(seconds: float) -> str:
    """Seconds -> the PTn.nnnS form Windows uses for IdleTimeOut."""
    return f"PT{seconds:.3f}S"


def format_runtime(seconds: float) -> str:
    """Seconds -> the P0DT0H0M0S form Windows uses for ShellRunTime/ShellInactivity."""
    s = int(seconds)
    return f"P{s // 86400}DT{s % 86400 // 3600}H{s % 3600 // 60}M{s % 60}S"


def new_id() -> str:
    return str(uuid.uuid4()).upper()


def envelope(action: str, relates_to: str, body: str) -> bytes:
    """A response envelope with Windows' header layout; body is already-escaped XML."""
    header = (
        f"<s:Header><a:Action>{escape(action)}</a:Action>"
        f"<a:MessageID>uuid:{new_id()}</a:MessageID>"
        f"<p:ActivityId>{new_id()}</p:ActivityId>"
        f"<a:To>{ANONYMOUS}</a:To>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo></s:Header>"
    )
    return f"{_ENVELOPE_OPEN}{header}<s:Body>{body}</s:Body></s:Envelope>".encode("utf-8")


def el(tag: str, text: str | None = None, attrs: dict[str, str] | None = None, children: str = "") -> str:
    """One element as text; text is escaped, children are trusted XML."""
    attr = "".join(f" {k}={quoteattr(v)}" for k, v in (attrs or {}).items())
    inner = (escape(text) if text is not None else "") + children
    return f"<{tag}{attr}>{inner}</{tag}>" if inner or text is not None else f"<{tag}{attr}/>"


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class WSManFault(Exception):
    """A WS-Management fault, raised by handlers and rendered as Windows renders it."""

    code: str  # s:Sender / s:Receiver
    subcode: str  # w:InvalidSelectors, w:TimedOut, ...
    reason: str
    wsman_code: int
    message: str | None = None  # f:Message text (defaults to reason)
    fault_detail: str | None = None  # w:FaultDetail URI
    provider: tuple[str, str] | None = None  # (provider, path) for f:ProviderFault
    nested: bool = False  # ProviderFault wraps another WSManFault (Shell provider style)
    action: str = FAULT_ACTION
    http_status: int = 500
    kind: str = ""  # short name for logs and counters

    def render(self, machine: str, relates_to: str) -> bytes:
        message = self.message if self.message is not None else self.reason
        f_ns = 'xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"'
        code_attrs = f'Code="{self.wsman_code}" Machine={quoteattr(machine)}'
        msg = escape(message)
        if self.provider:
            if self.nested:
                msg = f"<f:WSManFault {f_ns} {code_attrs}><f:Message>{msg}</f:Message></f:WSManFault>"
            msg = (
                f"<f:ProviderFault provider={quoteattr(self.provider[0])} path={quoteattr(self.provider[1])}>"
                f"{msg}</f:ProviderFault>"
            )
        detail = f"<w:FaultDetail>{escape(self.fault_detail)}</w:FaultDetail>" if self.fault_detail else ""
        body = (
            f"<s:Fault><s:Code><s:Value>{self.code}</s:Value><s:Subcode><s:Value>{self.subcode}</s:Value>"
            f"</s:Subcode></s:Code><s:Reason><s:Text xml:lang=\"en-US\">{escape(self.reason)}</s:Text></s:Reason>"
            f"<s:Detail>{detail}<f:WSManFault {f_ns} {code_attrs}><f:Message>{msg}</f:Message></f:WSManFault>"
            f"</s:Detail></s:Fault>"
        )
        return envelope(self.action, relates_to, body)


_SHELL_PROVIDER = ("Shell provider", r"%systemroot%\system32\WsmSvc.dll")
_CMD_PLUGIN = ("Shell cmd plugin", r"%systemroot%\system32\winrscmd.dll")
_INVALID_SELECTORS = (
    "The WS-Management service cannot process the request because the request contained invalid "
    "selectors for the resource. "
)
_UNEXPECTED_SELECTORS = "http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/UnexpectedSelectors"


def timed_out() -> WSManFault:
    """Receive/operation ran past OperationTimeout (transcripts: test_winrs_operation_timeout)."""
    text = "The WS-Management service cannot complete the operation within the time specified in OperationTimeout.  "
    return WSManFault("s:Receiver", "w:TimedOut", text, 0x80338029, kind="operation_timeout")


def _invalid_selectors(kind: str, **message: t.Any) -> WSManFault:
    """A selector naming nothing the host has (ERROR_WSMAN_INVALID_SELECTORS); the faults differ in their f:Message."""
    return WSManFault("s:Sender", "w:InvalidSelectors", _INVALID_SELECTORS, 0x8033805B,
                      fault_detail=_UNEXPECTED_SELECTORS, kind=kind, **message)


def shell_not_found(shell_id: str | None = None) -> WSManFault:
    """Unknown, deleted or expired ShellId (transcript: test_psrp_is_alive_invalid_selectors)."""
    return _invalid_selectors("shell_not_found", provider=_SHELL_PROVIDER, nested=True)


def command_not_found() -> WSManFault:
    """Unknown CommandId (transcript: test_winrs_bad_cmd_id)."""
    return _invalid_selectors("command_not_found", message=(
        "The Windows Remote Shell received a request to perform an operation on a command identifier that "
        "does not exist. Either the command has completed execution or the client specified an invalid "
        "command identifier. "
    ))


def invalid_parameter() -> WSManFault:
    """cmd plugin parameter error, e.g. a WinRS Receive without CommandId (test_winrs_fail_poll_process)."""
    return WSManFault(
        "s:Sender",
        "w:InvalidParameter",
        "The parameter is incorrect. ",
        87,
        fault_detail="http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/InvalidValue",
        provider=_CMD_PLUGIN,
        kind="invalid_parameter",
    )


def file_not_found() -> WSManFault:
    """WINRS_SKIP_CMD_SHELL with an executable the host cannot find (test_winrs_no_cmd_shell)."""
    return WSManFault(
        "s:Receiver",
        "w:InternalError",
        "The system cannot find the file specified. ",
        0x80070002,
        provider=_CMD_PLUGIN,
        kind="file_not_found",
    )


def invalid_timeout_header(value: str) -> WSManFault:
    """OperationTimeout that is not a positive xs:duration (test_psrp_is_alive_other_wsman_error)."""
    return WSManFault(
        "s:Sender",
        "a:InvalidMessageInformationHeader",
        "The WS-Management service cannot process the request. The request contains one or more invalid SOAP headers. ",
        0x8033800F,
        message=(
            "The WS-Management service cannot process the request. The XML contains an invalid timeout field in the "
            f"SOAP header: {value}. "
        ),
        kind="invalid_header",
    )


def _quota_limit(code: int, limit: int, what: str, advice: str, kind: str) -> WSManFault:
    """A per-user quota exceeded (wsman:QuotaLimit per MS-WSMV 3.1.4.5.2.1); the quotas differ in noun and advice."""
    text = (
        f"The WS-Management service cannot process the request. This user is allowed a maximum number of {limit} "
        f"concurrent {what}, which has been exceeded. {advice} "
    )
    return WSManFault("s:Receiver", "w:QuotaLimit", text, code, kind=kind)


def quota_shells(limit: int) -> WSManFault:
    """MaxShellsPerUser exceeded (ERROR_WSMAN_QUOTA_MAX_SHELLS)."""
    return _quota_limit(0x803381A5, limit, "shells", "Close existing shells or raise the quota for this user.",
                        "quota_shells")


def quota_operations(limit: int) -> WSManFault:
    """MaxConcurrentOperationsPerUser exceeded (ERROR_WSMAN_QUOTA_MAX_OPERATIONS)."""
    return _quota_limit(0x803381A6, limit, "operations",
                        "Close existing operations for this user, or raise the quota for this user.",
                        "quota_operations")


# The Microsoft.PowerShell plugin reports a managed exception as WSManPluginErrorCodes.ManagedException
# (0x80540FA0, PowerShell's WSManPlugin.cs ReportWSManOperationComplete) with the exception's message;
# WinRM wraps it in a ProviderFault naming the plugin and its DLL, with an empty s:Reason (the shape of
# Windows' answers kept in pywinrm's winrm/tests/test_transport.py and OMI's WinRM client tests).
POWERSHELL_PLUGIN_PATH = r"C:\Windows\system32\pwrshplugin.dll"
MANAGED_EXCEPTION = 0x80540FA0


def powershell_plugin_fault(configuration: str, message: str, kind: str) -> WSManFault:
    """An error the PowerShell plugin of `configuration` reported for a request (its message as sent)."""
    provider = "microsoft.powershell" if configuration.lower() == "microsoft.powershell" else configuration
    return WSManFault(
        "s:Receiver",
        "w:InternalError",
        "",
        MANAGED_EXCEPTION,
        message=message,
        provider=(provider, POWERSHELL_PLUGIN_PATH),
        kind=kind,
    )


def received_data_exceeded(configuration: str, maximum: int) -> WSManFault:
    """MaximumReceivedDataSizePerCommandMB exceeded by a command's input (PSRemotingErrorId 872,
    RemotingErrorIdStrings.ReceivedDataSizeExceededMaximumServer, raised by PriorityReceiveDataCollection)."""
    text = f"The total data received from the remote client exceeded the allowed maximum. The allowed maximum is {maximum}."
    return powershell_plugin_fault(configuration, text, "received_data_exceeded")


def received_object_exceeded(configuration: str, size: int, maximum: int) -> WSManFault:
    """MaximumReceivedObjectSizeMB exceeded by one object (PSRemotingErrorId 871,
    RemotingErrorIdStrings.ReceivedObjectSizeExceededMaximumServer, raised by ReceiveDataCollection)."""
    text = (
        "The current deserialized object size of the data received from the remote client computer exceeded the "
        f"allowed maximum object size. The current deserialized object size is {size}. The allowed maximum object "
        f"size is {maximum}."
    )
    return powershell_plugin_fault(configuration, text, "received_object_exceeded")


def provider_host_died() -> WSManFault:
    """The shell's host process ended under a request, as when it ran out of its MaxMemoryPerShellMB (code 1726,
    RPC_S_CALL_FAILED; the text Windows clients report, e.g. PowerShell's own remoting tests for a killed
    wsmprovhost.exe, and users whose sessions broke past the per-shell memory quota)."""
    text = ("The WSMan provider host process did not return a proper response.  A provider in the host process may "
            "have behaved improperly. ")
    return WSManFault("s:Receiver", "w:InternalError", text, 1726, kind="provider_host_died")


def access_denied() -> WSManFault:
    """The authenticated user may not use the resource."""
    return WSManFault("s:Sender", "w:AccessDenied", "Access is denied. ", 5, kind="access_denied")


def unknown_configuration(resource_uri: str) -> WSManFault:
    """PSRP resource URI naming a session configuration the host does not have (not in the transcripts:
    code and text as Windows answers an unregistered plugin resource URI)."""
    text = (
        f"The WS-Management service cannot process the request. The resource URI ({resource_uri}) was not found "
        "in the WS-Management catalog. The catalog contains the metadata that describes resources, or logical "
        "endpoints. "
    )
    return WSManFault(
        "s:Sender",
        "w:DestinationUnreachable",
        "The WS-Management service cannot process the request. The service cannot find the resource identified "
        "by the resource URI and selectors. ",
        0x80338000,
        message=text,
        fault_detail="http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/InvalidResourceURI",
        kind="unknown_configuration",
    )


def action_not_supported(action: str) -> WSManFault:
    """wsa:Action the service does not implement."""
    return WSManFault(
        "s:Sender",
        "a:ActionNotSupported",
        "The action is not supported by the service. ",
        0x80338115,
        message=f"The WS-Management service cannot process the request. The action {action} is not supported. ",
        action=ADDRESSING_FAULT_ACTION,
        kind="action_not_supported",
    )


def invalid_xml(detail: str) -> WSManFault:
    """The request body is not well-formed SOAP."""
    return WSManFault(
        "s:Sender",
        "w:SchemaValidationError",
        "The SOAP XML in the message does not match the corresponding XML schema definition. ",
        0x8033804F,
        message=f"The WS-Management service cannot process the request because the XML is invalid: {detail} ",
        kind="invalid_xml",
    )


def internal_error(message: str) -> WSManFault:
    """A failure inside the lab itself, reported as Windows reports provider failures."""
    return WSManFault("s:Receiver", "w:InternalError", message, 0x80004005, kind="internal_error")


# Faults tests can inject through faults.wsman_fault_next, by name.
INJECTABLE = {
    "access_denied": lambda cfg: access_denied(),
    "shell_not_found": lambda cfg: shell_not_found(),
    "command_not_found": lambda cfg: command_not_found(),
    "operation_timeout": lambda cfg: timed_out(),
    "timed_out": lambda cfg: timed_out(),
    "quota": lambda cfg: quota_shells(cfg.max_shells_per_user),
    "quota_shells": lambda cfg: quota_shells(cfg.max_shells_per_user),
    "quota_operations": lambda cfg: quota_operations(cfg.max_concurrent_operations_per_user),
    "invalid_parameter": lambda cfg: invalid_parameter(),
    "internal_error": lambda cfg: internal_error("The lab injected an internal error. "),
}
