"""The lab's control API: a small JSON HTTP server on 127.0.0.1, and LabClient to call it.

Routes (docs/lab.md, "Control API"); <host> is a host name (WIN-LAB1, case-insensitive,
or win-lab1.lab.test), <proxy> a key of describe()["proxies"]:

    GET  /describe                     the lab's JSON (as printed by `python -m tests.lab up --json`)
    GET  /hosts/<host>/counters        {"counters": {name: int}}
    GET  /hosts/<host>/log             {"log": [event, ...]}
    POST /hosts/<host>/reset           zero counters and clear the log
    GET  /hosts/<host>/faults          {"faults": {...}}
    POST /hosts/<host>/faults          body {setting: value}: Faults.update; answers {"faults": {...}}
    POST /hosts/<host>/faults/clear    every switch off (releases held requests)
    GET  /hosts/<host>/held            {"held": [...]}: the requests held right now
    POST /hosts/<host>/held/wait       body {"timeout_s": float}: wait until a request is held; {"held": [...]}
    POST /hosts/<host>/held/release    {"released": int}: held requests go on
    GET  /hosts/<host>/limits          {"limits": {name: value|null}, "configurations": {name: {...}}}
    POST /hosts/<host>/limits          body {Windows quota name: value|null, "configuration": optional}
    POST /hosts/<host>/language_mode   body {"language_mode": "FullLanguage"|"ConstrainedLanguage"}
    GET  /hosts/<host>/state           {"state": {"shells", "runspace_pools", "pipelines_running", "pipelines_held", "pipelines_ending", "operations": {user: n}}}
    POST /hosts/<host>/expire_shells   {"expired": int}
    POST /hosts/<host>/drop_connections {"dropped": int}
    GET  /hosts/<host>/relays          {"relays": {"http": {...}, "https": {...}}}
    GET  /hosts/<host>/machine         {"machine": {power, boots, boot_time, boot_filetime, uptime_s, ...}}
    POST /hosts/<host>/reboot          body {"down_s": float | null}: restart now (null: down until /boot)
    POST /hosts/<host>/boot            boot a host a reboot holds down; answers {"machine": {...}}
    GET  /hosts/<host>/services        {"services": [{name, display_name, state, start_mode, ...}, ...]}
    GET  /hosts/<host>/services/<name> {"service": {...}} by service name or display name
    POST /relays/rtt                   body {"rtt_ms": float, "host": optional}: change the added RTT live
    GET  /proxies/<proxy>/counters     {"counters": {...}}
    POST /proxies/<proxy>/restart      restart the proxy process
    GET  /proxies/<proxy>/recorded     {"length": int, "base64": str}  (the inspecting proxy's bytes)
    GET  /proxies/<proxy>/access_log   {"text": str}
    GET  /internal_errors?since=N      {"errors": [{seq, host, where, error, time, traceback}, ...]} (the lab's own
                                       exceptions after the first N, tests/lab/_internal.py)

Errors answer {"error": message} with 404 (unknown host/proxy/route), 400 (bad
request or unknown fault setting), 409 (the lab cannot do it) or 500.
"""

from __future__ import annotations

import base64
import http.server
import json
import logging
import threading
import typing as t
import urllib.error
import urllib.parse
import urllib.request

from tests.lab._errors import LabError, UnknownComponent

log = logging.getLogger(__name__)

_MAX_BODY = 1 << 20
_CLIENT_TIMEOUT_S = 30.0
_MAX_HOLD_WAIT_S = 300.0  # a control call waiting for a held request is bounded like every lab loop


class ControlError(RuntimeError):
    """The control API refused a call; status is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"lab control API answered {status}: {message}")
        self.status = status
        self.message = message


class LabAPI(t.Protocol):
    """What the control API serves: the calls a Lab (tests/lab/_lab.py) answers in process, and LabClient remotely.

    The server is handed a LabAPI; raising UnknownComponent answers 404, LabError 409.
    """

    def describe(self) -> dict[str, t.Any]: ...
    def host_counters(self, host: str) -> dict[str, int]: ...
    def host_log(self, host: str) -> list[dict[str, t.Any]]: ...
    def reset_host(self, host: str) -> None: ...
    def get_faults(self, host: str) -> dict[str, t.Any]: ...
    def set_faults(self, host: str, **settings: t.Any) -> dict[str, t.Any]: ...
    def clear_faults(self, host: str) -> dict[str, t.Any]: ...
    def held(self, host: str) -> list[dict[str, t.Any]]: ...
    def wait_held(self, host: str, timeout_s: float = 60.0) -> list[dict[str, t.Any]]: ...
    def release_held(self, host: str) -> int: ...
    def get_limits(self, host: str) -> dict[str, t.Any]: ...
    def set_limits(self, host: str, configuration: str | None = None, **values: float | None) -> dict[str, t.Any]: ...
    def set_language_mode(self, host: str, language_mode: str) -> str: ...
    def host_state(self, host: str) -> dict[str, t.Any]: ...
    def expire_shells(self, host: str) -> int: ...
    def drop_connections(self, host: str) -> int: ...
    def relay_counters(self, host: str) -> dict[str, dict[str, int]]: ...
    def host_machine(self, host: str) -> dict[str, t.Any]: ...
    def reboot_host(self, host: str, down_s: float | None = -1.0) -> dict[str, t.Any]: ...
    def boot_host(self, host: str) -> dict[str, t.Any]: ...
    def host_services(self, host: str, name: str | None = None) -> t.Any: ...
    def set_rtt(self, rtt_ms: float, host: str | None = None) -> float: ...
    def proxy_counters(self, proxy: str) -> dict[str, t.Any]: ...
    def restart_proxy(self, proxy: str) -> None: ...
    def proxy_recorded(self, proxy: str) -> bytes: ...
    def proxy_access_log(self, proxy: str) -> str: ...
    def internal_errors(self, since: int = 0) -> list[dict[str, t.Any]]: ...


def encode_recorded(data: bytes) -> dict[str, t.Any]:
    """Recorded bytes as JSON-ready data (base64); LabClient.proxy_recorded decodes them."""
    return {"length": len(data), "base64": base64.b64encode(data).decode()}


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: t.Any) -> None:  # noqa: A002 (stdlib's name)
        log.debug("control API: " + format, *args)

    def do_GET(self) -> None:  # noqa: N802 (stdlib's name)
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _query(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))

    def _dispatch(self, method: str) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length > _MAX_BODY:
                raise ValueError("request body too large")
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw.strip() else {}
            parts = [urllib.parse.unquote(p) for p in urllib.parse.urlsplit(self.path).path.split("/") if p]
            status, answer = 200, self._route(method, parts, body)
        except UnknownComponent as e:
            status, answer = 404, {"error": str(e)}
        except (ValueError, KeyError, TypeError) as e:
            status, answer = 400, {"error": str(e)}
        except LabError as e:
            status, answer = 409, {"error": str(e)}
        except Exception as e:  # the control API must answer, whatever broke
            log.exception("control API %s %s failed", method, self.path)
            status, answer = 500, {"error": f"{type(e).__name__}: {e}"}
        data = json.dumps(answer, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str, parts: list[str], body: t.Any) -> t.Any:
        lab = self.server.lab
        match method, parts:
            case "GET", ["describe"]:
                return lab.describe()
            case "GET", ["internal_errors"]:
                return {"errors": lab.internal_errors(int(self._query().get("since", "0")))}
            case "GET", ["hosts", host, "counters"]:
                return {"counters": lab.host_counters(host)}
            case "GET", ["hosts", host, "log"]:
                return {"log": lab.host_log(host)}
            case "POST", ["hosts", host, "reset"]:
                lab.reset_host(host)
                return {"ok": True}
            case "GET", ["hosts", host, "faults"]:
                return {"faults": lab.get_faults(host)}
            case "POST", ["hosts", host, "faults"]:
                if not isinstance(body, dict):
                    raise ValueError("fault settings must be a JSON object")
                return {"faults": lab.set_faults(host, **body)}
            case "POST", ["hosts", host, "faults", "clear"]:
                return {"faults": lab.clear_faults(host)}
            case "GET", ["hosts", host, "held"]:
                return {"held": lab.held(host)}
            case "POST", ["hosts", host, "held", "wait"]:
                timeout_s = float(body.get("timeout_s", 60.0)) if isinstance(body, dict) else 60.0
                if not 0 <= timeout_s <= _MAX_HOLD_WAIT_S:
                    raise ValueError(f"timeout_s must be between 0 and {_MAX_HOLD_WAIT_S:g}")
                return {"held": lab.wait_held(host, timeout_s)}
            case "POST", ["hosts", host, "held", "release"]:
                return {"released": lab.release_held(host)}
            case "GET", ["hosts", host, "limits"]:
                return lab.get_limits(host)
            case "POST", ["hosts", host, "limits"]:
                if not isinstance(body, dict):
                    raise ValueError("limits must be a JSON object of Windows quota names")
                values = dict(body)
                configuration = values.pop("configuration", None)
                return lab.set_limits(host, configuration, **values)
            case "POST", ["hosts", host, "language_mode"]:
                return {"language_mode": lab.set_language_mode(host, str(body["language_mode"]))}
            case "GET", ["hosts", host, "state"]:
                return {"state": lab.host_state(host)}
            case "POST", ["hosts", host, "expire_shells"]:
                return {"expired": lab.expire_shells(host)}
            case "POST", ["hosts", host, "drop_connections"]:
                return {"dropped": lab.drop_connections(host)}
            case "GET", ["hosts", host, "relays"]:
                return {"relays": lab.relay_counters(host)}
            case "GET", ["hosts", host, "machine"]:
                return {"machine": lab.host_machine(host)}
            case "POST", ["hosts", host, "reboot"]:
                down_s = body.get("down_s", -1.0) if isinstance(body, dict) else -1.0
                return {"machine": lab.reboot_host(host, None if down_s is None else float(down_s))}
            case "POST", ["hosts", host, "boot"]:
                return {"machine": lab.boot_host(host)}
            case "GET", ["hosts", host, "services"]:
                return {"services": lab.host_services(host)}
            case "GET", ["hosts", host, "services", name]:
                return {"service": lab.host_services(host, name)}
            case "POST", ["relays", "rtt"]:
                return {"rtt_ms": lab.set_rtt(float(body["rtt_ms"]), body.get("host"))}
            case "GET", ["proxies", proxy, "counters"]:
                return {"counters": lab.proxy_counters(proxy)}
            case "POST", ["proxies", proxy, "restart"]:
                lab.restart_proxy(proxy)
                return {"ok": True}
            case "GET", ["proxies", proxy, "recorded"]:
                return encode_recorded(lab.proxy_recorded(proxy))
            case "GET", ["proxies", proxy, "access_log"]:
                return {"text": lab.proxy_access_log(proxy)}
        raise UnknownComponent(f"no route {method} /{'/'.join(parts)}")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], lab: LabAPI) -> None:
        super().__init__(address, _Handler)
        self.lab = lab


class ControlServer:
    """Serve a Lab's control API on 127.0.0.1 (a free port unless one is given)."""

    def __init__(self, lab: LabAPI, address: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        self.lab = lab
        self._server = _Server(address, lab)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="lab-control", daemon=True)
        self._thread.start()
        log.info("lab control API on %s", self.url)

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        self._server.server_close()


class LabClient:
    """Drive a lab through its control API; the same calls a Lab object answers in process."""

    def __init__(self, control_url: str, timeout: float = _CLIENT_TIMEOUT_S) -> None:
        parts = urllib.parse.urlsplit(control_url)
        if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the lab control API is served on loopback over http, not {control_url!r}")
        self.control_url = control_url.rstrip("/")
        self.timeout = timeout
        # Never through a proxy from the environment: the control API is on loopback (R7's spirit).
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, method: str, path: str, body: t.Any = None, *, timeout: float | None = None) -> t.Any:
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        request = urllib.request.Request(f"{self.control_url}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with self._opener.open(request, timeout=timeout or self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            try:
                message = json.loads(e.read()).get("error", e.reason)
            except (ValueError, AttributeError):
                message = str(e.reason)
            raise ControlError(e.code, message) from None

    @staticmethod
    def _q(name: str) -> str:
        return urllib.parse.quote(name, safe="")

    def describe(self) -> dict[str, t.Any]:
        return t.cast(dict[str, t.Any], self._call("GET", "/describe"))

    def host_counters(self, host: str) -> dict[str, int]:
        return t.cast(dict[str, int], self._call("GET", f"/hosts/{self._q(host)}/counters")["counters"])

    def host_log(self, host: str) -> list[dict[str, t.Any]]:
        return t.cast(list[dict[str, t.Any]], self._call("GET", f"/hosts/{self._q(host)}/log")["log"])

    def internal_errors(self, since: int = 0) -> list[dict[str, t.Any]]:
        return t.cast(list[dict[str, t.Any]], self._call("GET", f"/internal_errors?since={int(since)}")["errors"])

    def reset_host(self, host: str) -> None:
        self._call("POST", f"/hosts/{self._q(host)}/reset")

    def get_faults(self, host: str) -> dict[str, t.Any]:
        return t.cast(dict[str, t.Any], self._call("GET", f"/hosts/{self._q(host)}/faults")["faults"])

    def set_faults(self, host: str, **settings: t.Any) -> dict[str, t.Any]:
        return t.cast(dict[str, t.Any], self._call("POST", f"/hosts/{self._q(host)}/faults", settings)["faults"])

    def clear_faults(self, host: str) -> dict[str, t.Any]:
        return t.cast(dict[str, t.Any], self._call("POST", f"/hosts/{self._q(host)}/faults/clear")["faults"])

    def wait_held(self, host: str, timeout_s: float = 60.0) -> list[dict[str, t.Any]]:
        answer = self._call("POST", f"/hosts/{self._q(host)}/held/wait", {"timeout_s": timeout_s},
                            timeout=timeout_s + self.timeout)
        return t.cast(list[dict[str, t.Any]], answer["held"])

    def held(self, host: str) -> list[dict[str, t.Any]]:
        return t.cast(list[dict[str, t.Any]], self._call("GET", f"/hosts/{self._q(host)}/held")["held"])

    def release_held(self, host: str) -> int:
        return int(self._call("POST", f"/hosts/{self._q(host)}/held/release")["released"])

    def get_limits(self, host: str) -> dict[str, t.Any]:
        return t.cast(dict[str, t.Any], self._call("GET", f"/hosts/{self._q(host)}/limits"))

    def set_limits(self, host: str, configuration: str | None = None, **values: float | None) -> dict[str, t.Any]:
        body: dict[str, t.Any] = dict(values)
        if configuration is not None:
            body["configuration"] = configuration
        return t.cast(dict[str, t.Any], self._call("POST", f"/hosts/{self._q(host)}/limits", body))

    def set_language_mode(self, host: str, language_mode: str) -> str:
        return str(self._call("POST", f"/hosts/{self._q(host)}/language_mode",
                              {"language_mode": language_mode})["language_mode"])
    def host_state(self, host: str) -> dict[str, t.Any]:
        return t.cast(dict[str, t.Any], self._call("GET", f"/hosts/{self._q(host)}/state")["state"])

    def expire_shells(self, host: str) -> int:
        return int(self._call("POST", f"/hosts/{self._q(host)}/expire_shells")["expired"])

    def drop_connections(self, host: str) -> int:
        return int(self._call("POST", f"/hosts/{self._q(host)}/drop_connections")["dropped"])

    def relay_counters(self, host: str) -> dict[str, dict[str, int]]:
        return t.cast(dict[str, dict[str, int]], self._call("GET", f"/hosts/{self._q(host)}/relays")["relays"])

    def host_machine(self, host: str) -> dict[str, t.Any]:
        return t.cast(dict[str, t.Any], self._call("GET", f"/hosts/{self._q(host)}/machine")["machine"])

    def reboot_host(self, host: str, down_s: float | None = -1.0) -> dict[str, t.Any]:
        return t.cast(dict[str, t.Any],
                      self._call("POST", f"/hosts/{self._q(host)}/reboot", {"down_s": down_s})["machine"])

    def boot_host(self, host: str) -> dict[str, t.Any]:
        return t.cast(dict[str, t.Any], self._call("POST", f"/hosts/{self._q(host)}/boot")["machine"])

    def host_services(self, host: str, name: str | None = None) -> t.Any:
        if name is None:
            return self._call("GET", f"/hosts/{self._q(host)}/services")["services"]
        return self._call("GET", f"/hosts/{self._q(host)}/services/{self._q(name)}")["service"]

    def set_rtt(self, rtt_ms: float, host: str | None = None) -> float:
        body: dict[str, t.Any] = {"rtt_ms": rtt_ms}
        if host:
            body["host"] = host
        return float(self._call("POST", "/relays/rtt", body)["rtt_ms"])

    def proxy_counters(self, proxy: str) -> dict[str, t.Any]:
        return t.cast(dict[str, t.Any], self._call("GET", f"/proxies/{self._q(proxy)}/counters")["counters"])

    def restart_proxy(self, proxy: str) -> None:
        self._call("POST", f"/proxies/{self._q(proxy)}/restart")

    def proxy_recorded(self, proxy: str) -> bytes:
        return base64.b64decode(self._call("GET", f"/proxies/{self._q(proxy)}/recorded")["base64"])

    def proxy_access_log(self, proxy: str) -> str:
        return str(self._call("GET", f"/proxies/{self._q(proxy)}/access_log")["text"])
