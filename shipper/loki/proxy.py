"""Push through a forward proxy: which one (resolved once, at start), and what its CONNECT says.

The choice follows httpx and requests: `loki.proxy_url` if set ("direct": none at all), else
HTTPS_PROXY for an https loki.url and HTTP_PROXY for an http one, ALL_PROXY for either, unless
NO_PROXY exempts Loki's host. A lowercase variable wins over its uppercase twin, even when
empty (as urllib's getproxies(), which httpx reads). Only http:// proxies are spoken: an https
loki.url is reached through a CONNECT tunnel with TLS end to end, an http one by sending the
absolute URL to the proxy.
"""

from __future__ import annotations

import base64
import http
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

DIRECT = "direct"  # loki.proxy_url: connect directly, whatever the environment says


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    source: str  # "loki.proxy_url" or the variable it came from, for messages
    authorization: str = field(default="", repr=False)  # Proxy-Authorization, from userinfo
    password: str = field(default="", repr=False)  # to mask wherever an answer echoes it

    @property
    def endpoint(self) -> str:
        """host:port and where it came from: never its credentials."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"proxy {host}:{self.port} (from {self.source})"


def parse_proxy(url: str, source: str) -> Proxy:
    """A proxy URL such as http://user:password@proxy:3128; ValueError says what is wrong,
    without repeating the credentials."""
    if "://" not in url:  # "proxy:3128", as httpx and requests read it
        url = f"http://{url}"
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"{source}: only http:// proxies are supported, got {parts.scheme}://")
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    if not parts.hostname:
        raise ValueError(f"{source}: the proxy URL has no host")
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(f"{source}: a proxy URL has no path, got {parts.path!r}")
    authorization = password = ""
    if parts.username is not None:
        password = unquote(parts.password or "")
        pair = f"{unquote(parts.username)}:{password}".encode()
        authorization = f"Basic {base64.b64encode(pair).decode('ascii')}"
    return Proxy(parts.hostname, port, source, authorization, password)


def select_proxy(url: str, proxy_url: str, env: Mapping[str, str]) -> Proxy | None:
    """The proxy for pushes to `url`, from `loki.proxy_url` or the environment; None: direct.
    An explicit proxy_url is used whatever NO_PROXY says, as in httpx and requests."""
    if proxy_url == DIRECT:
        return None
    if proxy_url:
        return parse_proxy(proxy_url, "loki.proxy_url")
    target = urlsplit(url)
    name, value = "", ""
    for base in (f"{target.scheme}_proxy", "all_proxy"):
        name, value = _variable(env, base)
        if value:
            break
    if not value or not target.hostname:
        return None
    port = target.port or (443 if target.scheme == "https" else 80)
    if bypassed(target.hostname, port, _variable(env, "no_proxy")[1]):
        return None
    return parse_proxy(value, name)


def _variable(env: Mapping[str, str], lower: str) -> tuple[str, str]:
    """(name, value) of the lowercase variable if set, else of the uppercase one."""
    name = lower if lower in env else lower.upper()
    return name, env.get(name, "").strip()


def bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Whether NO_PROXY exempts host:port. Comma-separated entries, case-insensitive: `*` for
    every host; a domain, with or without a leading `.` or `*.`, for itself and its subdomains
    (on a dot: example.com does not cover badexample.com); an IP address or a CIDR range for
    the addresses in it (a name is never resolved to match one); any of these with `:port` for
    that port only."""
    host = host.lower().strip("[]")
    address = _address(host)
    for entry in no_proxy.lower().split(","):
        entry = entry.strip()
        if entry == "*":
            return True
        name, entry_port = _split_port(entry)
        if not name or (entry_port is not None and entry_port != port):
            continue
        if address is not None:
            network = _network(name)
            if network is not None and address in network:
                return True
        else:
            domain = name.removeprefix("*").lstrip(".")
            if domain and (host == domain or host.endswith(f".{domain}")):
                return True
    return False


def _split_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [::1] or [::1]:8080
        name, _, rest = entry[1:].partition("]")
        port = rest.removeprefix(":")
        return name, int(port) if port.isdigit() else None
    if entry.count(":") == 1:  # host:port (a bare IPv6 address has more colons)
        name, _, port = entry.partition(":")
        return (name, int(port)) if port.isdigit() else ("", None)
    return entry, None


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(entry, strict=False)  # an address is a /32 or /128
    except ValueError:
        return None


def connect_request(authority: str, proxy: Proxy) -> bytes:
    """The CONNECT that opens a tunnel to Loki's host:port through the proxy."""
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if proxy.authorization:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def connect_refused(status: int, proxy: Proxy, authority: str) -> str:
    """Why a CONNECT was refused, and what to check."""
    try:
        phrase = f" {http.HTTPStatus(status).phrase}"
    except ValueError:
        phrase = ""
    said = f"{proxy.endpoint} refused CONNECT to {authority}: {status}{phrase}"
    if status in (401, 407):  # tinyproxy answers 401 to wrong credentials, 407 to none
        return (f"{said}: check the proxy credentials (user:password@ in {proxy.source})"
                if proxy.authorization else
                f"{said}: the proxy wants credentials: add user:password@ to {proxy.source}")
    if status == 403:
        return f"{said}: the proxy's rules do not allow {authority}"
    if status in (502, 503, 504):
        return f"{said}: the proxy could not reach {authority}"
    return said


__all__ = ["DIRECT", "Proxy", "bypassed", "connect_refused", "connect_request", "parse_proxy",
           "select_proxy"]
