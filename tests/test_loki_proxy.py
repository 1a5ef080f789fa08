"""Pushes through forward proxies: which proxy (pure), then real tinyproxy and squid between the
pusher and the receiver, plain http (absolute-form) and https (CONNECT, TLS inside)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import ssl
from collections.abc import Mapping
from pathlib import Path

import pytest

from shipper.config import ConfigError, LokiConfig, TLSConfig
from shipper.loki.http import ConnectError, HttpClient
from shipper.loki.proxy import bypassed, parse_proxy, select_proxy
from shipper.loki.pusher import LokiPusher, Outcome, PushResult
from shipper.metrics import Metrics
from tests.support.agent import make_config, running, until
from tests.support.faults import free_port
from tests.support.kubelet import PodLog
from tests.support.loki_receiver import LokiReceiver
from tests.support.proxies import ForwardProxy, Squid, Tinyproxy
from tests.support.tls import make_cert
from tests.test_loki_pusher import Sleeps, batch, sizes

# -- NO_PROXY ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("host", "port", "no_proxy", "bypass"), [
    ("loki.example", 443, "*", True),
    ("loki.example", 443, "", False),
    ("loki.example", 443, "loki.example", True),  # the host itself
    ("LOKI.Example", 443, "loki.EXAMPLE", True),  # case does not matter
    ("push.loki.example", 443, "loki.example", True),  # a subdomain
    ("push.loki.example", 443, ".loki.example", True),  # a leading dot: the same
    ("loki.example", 443, ".loki.example", True),
    ("push.loki.example", 443, "*.loki.example", True),
    ("badloki.example", 443, "loki.example", False),  # on a dot only (requests would match)
    ("loki.example", 443, "other.example, loki.example ,", True),  # spaces and empty entries
    ("loki.example", 443, "example", True),  # a suffix of whole labels
    ("loki.example", 443, "loki.example:443", True),  # host:port, that port only
    ("loki.example", 3100, "loki.example:443", False),
    ("10.1.2.3", 3100, "10.1.2.3", True),  # an address
    ("10.1.2.3", 3100, "10.0.0.0/8", True),  # a CIDR range, as httpx
    ("10.1.2.3", 3100, "10.0.0.0/16", False),
    ("10.1.2.3", 3100, "10.1.2.3:3100", True),
    ("10.1.2.3", 3100, "10.1.2.3:80", False),
    ("10.1.2.3", 3100, "2.3", False),  # an address is not a domain: no suffix matching
    ("::1", 3100, "::1", True),
    ("::1", 3100, "[::1]:3100", True),
    ("::1", 3100, "[::1]:80", False),
    ("fd00::5", 3100, "fd00::/8", True),
    ("localhost", 3100, "127.0.0.1", False),  # names are never resolved to match
    ("127.0.0.1", 3100, "localhost", False),
    ("loki.example", 443, "loki.example:https", False),  # a port that is not a number
])
def test_no_proxy_matching(host: str, port: int, no_proxy: str, bypass: bool) -> None:
    assert bypassed(host, port, no_proxy) is bypass


# -- which proxy ---------------------------------------------------------------------------------

HTTPS_URL = "https://loki.example/loki/api/v1/push"
HTTP_URL = "http://loki:3100/loki/api/v1/push"


@pytest.mark.parametrize(("url", "proxy_url", "env", "chosen"), [
    (HTTPS_URL, "", {}, None),
    (HTTPS_URL, "", {"HTTPS_PROXY": "http://up:3128"}, "up:3128 (from HTTPS_PROXY)"),
    (HTTPS_URL, "", {"HTTP_PROXY": "http://up:3128"}, None),  # the https one decides
    (HTTP_URL, "", {"HTTP_PROXY": "http://up:3128", "HTTPS_PROXY": "http://s:1"},
     "up:3128 (from HTTP_PROXY)"),
    (HTTPS_URL, "", {"https_proxy": "http://low:1", "HTTPS_PROXY": "http://up:2"},
     "low:1 (from https_proxy)"),  # lowercase wins
    (HTTPS_URL, "", {"https_proxy": "", "HTTPS_PROXY": "http://up:2"}, None),  # even empty
    (HTTPS_URL, "", {"ALL_PROXY": "http://all:3"}, "all:3 (from ALL_PROXY)"),
    (HTTPS_URL, "", {"all_proxy": "http://all:3", "HTTPS_PROXY": "http://up:2"},
     "up:2 (from HTTPS_PROXY)"),  # the scheme's own first
    (HTTPS_URL, "", {"HTTPS_PROXY": "up:3128"}, "up:3128 (from HTTPS_PROXY)"),  # no scheme
    (HTTPS_URL, "", {"HTTPS_PROXY": "http://up"}, "up:80 (from HTTPS_PROXY)"),
    (HTTPS_URL, "", {"HTTPS_PROXY": "http://up:1", "NO_PROXY": ".example"}, None),
    (HTTPS_URL, "", {"HTTPS_PROXY": "http://up:1", "no_proxy": "", "NO_PROXY": "*"},
     "up:1 (from HTTPS_PROXY)"),  # lowercase wins here too
    (HTTPS_URL, "http://mine:8080", {"HTTPS_PROXY": "http://up:1"},
     "mine:8080 (from loki.proxy_url)"),  # the config key over the environment...
    (HTTPS_URL, "http://mine:8080", {"NO_PROXY": "*"}, "mine:8080 (from loki.proxy_url)"),
    (HTTPS_URL, "direct", {"HTTPS_PROXY": "http://up:1"}, None),  # ...both ways
])
def test_the_proxy_is_chosen_as_httpx_chooses_it(url: str, proxy_url: str,
                                                 env: dict[str, str], chosen: str | None) -> None:
    proxy = select_proxy(url, proxy_url, env)
    assert (proxy.endpoint.removeprefix("proxy ") if proxy else None) == chosen


def test_proxy_credentials_come_from_the_userinfo_and_are_never_shown() -> None:
    proxy = parse_proxy("http://ship%40per:p%3Ass@up:3128", "HTTPS_PROXY")
    assert proxy.authorization == "Basic " + base64.b64encode(b"ship@per:p:ss").decode()
    assert proxy.password == "p:ss"
    assert "p:ss" not in repr(proxy) and "Basic" not in repr(proxy)
    assert proxy.endpoint == "proxy up:3128 (from HTTPS_PROXY)"


@pytest.mark.parametrize(("env", "says"), [
    ({"HTTPS_PROXY": "socks5://user:pw-Zq8y@up:1080"}, "HTTPS_PROXY: only http:// proxies"),
    ({"ALL_PROXY": "https://up:3128"}, "ALL_PROXY: only http:// proxies"),
    ({"HTTPS_PROXY": "http://up:port"}, "HTTPS_PROXY: Port could not be cast"),
    ({"HTTPS_PROXY": "http://up:3128/path"}, "HTTPS_PROXY: a proxy URL has no path"),
])
def test_an_unusable_proxy_fails_at_start_naming_where_it_came_from(env: dict[str, str],
                                                                    says: str) -> None:
    with pytest.raises(ConfigError) as info:
        LokiPusher(LokiConfig(url=HTTPS_URL), Metrics(), env=env)
    assert info.value.key == "loki.proxy_url"
    assert says in info.value.reason
    assert "pw-Zq8y" not in str(info.value)
    with pytest.raises(ConfigError, match=r"loki\.proxy_url: only http://"):
        LokiPusher(LokiConfig(url=HTTPS_URL, proxy_url="socks5://up:1080"), Metrics(), env={})


# -- real proxies --------------------------------------------------------------------------------

PROXIES = [Tinyproxy, Squid]


class TlsLoki:
    """A receiver serving https as `localhost` only: its certificate names no address, so
    reaching it through a proxy at 127.0.0.1 proves the check is against Loki's name."""

    def __init__(self, tmp_path: Path) -> None:
        self.cert, key = make_cert(tmp_path, "loki", "DNS:localhost")
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(self.cert, key)
        self.server_names: list[str | None] = []
        self.context.sni_callback = lambda sock, name, context: self.server_names.append(name)

    def receiver(self) -> LokiReceiver:
        return LokiReceiver(self.context, host="localhost")

    def config(self, url: str, **extra: object) -> LokiConfig:
        return LokiConfig(url=url, tls=TLSConfig(ca_file=str(self.cert)),  # type: ignore[arg-type]
                          **extra)


@pytest.fixture
def tls_loki(tmp_path: Path) -> TlsLoki:
    return TlsLoki(tmp_path)


def push_via(config: LokiConfig, env: Mapping[str, str], *lines: str,
             sleep: Sleeps | None = None) -> PushResult:
    async def run() -> PushResult:
        pusher = LokiPusher(config, Metrics(), env=env, sleep=sleep or Sleeps(),
                            rng=lambda: 0.0)
        try:
            streams = batch(*lines)
            return await pusher.push(streams, *sizes(streams))
        finally:
            await pusher.aclose()
    return asyncio.run(run())


def retried(config: LokiConfig, env: Mapping[str, str], times: int = 2) -> str | None:
    """Push until the batch has been retried `times` times, then give up (cancel, as shutdown
    does): the pusher's misconfiguration verdict by then."""
    async def run() -> str | None:
        waits = 0
        hold = asyncio.Event()  # never set: after `times` retries the push waits for good

        async def sleep(delay: float) -> None:
            nonlocal waits
            waits += 1
            if waits >= times:
                await hold.wait()

        pusher = LokiPusher(config, Metrics(), env=env, sleep=sleep)
        streams = batch("never")
        task = asyncio.create_task(pusher.push(streams, *sizes(streams)))
        await until(lambda: waits >= times)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pusher.aclose()
        return pusher.misconfigured
    return asyncio.run(run())


@pytest.mark.parametrize("kind", PROXIES, ids=lambda k: k.name)
def test_plain_http_goes_through_the_proxy_in_absolute_form(tmp_path: Path,
                                                           kind: type[ForwardProxy]) -> None:
    with kind(tmp_path) as proxy, LokiReceiver() as receiver:
        env = {"HTTP_PROXY": proxy.url, "HTTPS_PROXY": "http://127.0.0.1:1"}
        for n in range(3):
            result = push_via(LokiConfig(url=receiver.url), env, f"line-{n}")
            assert result == PushResult(Outcome.DELIVERED, 204, 1, 0)
        assert [e.line for e in receiver.entries] == ["line-0", "line-1", "line-2"]
        assert all(kind.name in h["Via"] for h in receiver.headers_seen)  # it forwarded them
        assert receiver.paths_seen == ["/loki/api/v1/push"] * 3
        assert f"POST http://127.0.0.1:{receiver.port}/loki/api/v1/push" in proxy.log()


@pytest.mark.parametrize("kind", PROXIES, ids=lambda k: k.name)
def test_https_goes_through_a_connect_tunnel_with_tls_to_lokis_name(
        tmp_path: Path, kind: type[ForwardProxy], tls_loki: TlsLoki) -> None:
    with kind(tmp_path) as proxy, tls_loki.receiver() as receiver:
        env = {"HTTPS_PROXY": proxy.url, "HTTP_PROXY": "http://127.0.0.1:1"}
        result = push_via(tls_loki.config(receiver.url), env, "secret-line")
        assert result == PushResult(Outcome.DELIVERED, 204, 1, 0)
        assert [e.line for e in receiver.entries] == ["secret-line"]
        assert "Via" not in receiver.headers_seen[0]  # a tunnel: the proxy saw no HTTP inside
        assert f"CONNECT localhost:{receiver.port}" in proxy.log()
        assert "secret-line" not in proxy.log()
    assert tls_loki.server_names == ["localhost"]  # SNI: Loki's name, not the proxy's


def test_tls_through_the_tunnel_is_checked_against_lokis_host(tmp_path: Path,
                                                              tls_loki: TlsLoki) -> None:
    with Tinyproxy(tmp_path) as proxy, tls_loki.receiver() as receiver:
        url = f"https://127.0.0.1:{receiver.port}/loki/api/v1/push"  # not the certificate's name
        client = HttpClient(url, timeout=5, ssl=ssl.create_default_context(
            cafile=tls_loki.cert), proxy=parse_proxy(proxy.url, "HTTPS_PROXY"))

        async def post() -> None:
            try:
                await client.post(b"x", {})
            finally:
                await client.aclose()

        with pytest.raises(ConnectError, match=f"127.0.0.1:{receiver.port} through proxy "
                           f"127.0.0.1:{proxy.port} .*CERTIFICATE_VERIFY_FAILED"):
            asyncio.run(post())
        assert receiver.requests == 0


def test_proxy_credentials_come_from_its_url_and_never_reach_the_logs(
        tmp_path: Path, tls_loki: TlsLoki, caplog: pytest.LogCaptureFixture) -> None:
    password = "pw-Zq8yN"
    with Tinyproxy(tmp_path, user="shipper", password=password) as proxy, \
            tls_loki.receiver() as tls_receiver, LokiReceiver() as receiver, \
            caplog.at_level(logging.DEBUG):
        right = proxy.url.replace("//", f"//shipper:{password}@")
        wrong = proxy.url.replace("//", "//shipper:wrong@")
        for config in (tls_loki.config(tls_receiver.url, proxy_url=right),
                       LokiConfig(url=receiver.url, proxy_url=right)):
            assert push_via(config, {}, "with").outcome is Outcome.DELIVERED
        # Wrong ones are retried, never dropped (tinyproxy resets a plain POST it refuses).
        for config in (tls_loki.config(tls_receiver.url, proxy_url=wrong),
                       LokiConfig(url=receiver.url, proxy_url=wrong)):
            retried(config, {})
        assert [e.line for e in tls_receiver.entries + receiver.entries] == ["with", "with"]
    errors = [getattr(r, "error", "") for r in caplog.records]
    assert (f"proxy 127.0.0.1:{proxy.port} (from loki.proxy_url) refused CONNECT to "
            f"localhost:{tls_receiver.port}: 401 Unauthorized: check the proxy credentials "
            f"(user:password@ in loki.proxy_url)") in errors
    text = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    assert password not in text
    assert base64.b64encode(f"shipper:{password}".encode()).decode() not in text


def test_a_proxy_that_wants_credentials_says_so(tmp_path: Path, tls_loki: TlsLoki) -> None:
    with Squid(tmp_path, ask_credentials=True) as proxy, tls_loki.receiver() as tls_receiver, \
            LokiReceiver() as receiver:
        # https: the CONNECT is refused, a transport error that says what to add...
        client = HttpClient(tls_receiver.url, timeout=5, ssl=ssl.create_default_context(
            cafile=tls_loki.cert), proxy=parse_proxy(proxy.url, "HTTPS_PROXY"))
        with pytest.raises(ConnectError) as info:
            asyncio.run(client.post(b"x", {}))
        assert str(info.value) == (
            f"proxy 127.0.0.1:{proxy.port} (from HTTPS_PROXY) refused CONNECT to "
            f"localhost:{tls_receiver.port}: 407 Proxy Authentication Required: the proxy "
            f"wants credentials: add user:password@ to HTTPS_PROXY")
        # ...plain http gets the proxy's 407 as the answer: a misconfiguration, for /ready.
        reason = retried(LokiConfig(url=receiver.url), {"HTTP_PROXY": proxy.url})
        assert str(reason).startswith("push answered HTTP 407 Proxy Authentication Required: "
                                      "check the proxy's credentials")
        with_any = proxy.url.replace("//", "//any:thing@")
        assert push_via(tls_loki.config(tls_receiver.url, proxy_url=with_any), {},
                        "with").outcome is Outcome.DELIVERED
        assert receiver.requests == 0 and len(tls_receiver.entries) == 1


def test_a_connect_refused_by_the_proxys_rules_is_retried_and_says_so(
        tmp_path: Path, tls_loki: TlsLoki, caplog: pytest.LogCaptureFixture) -> None:
    with Squid(tmp_path, deny_connect=True) as squid, tls_loki.receiver() as receiver, \
            caplog.at_level(logging.WARNING, "shipper.loki.pusher"):
        assert retried(tls_loki.config(receiver.url), {"https_proxy": squid.url}, 3) is None
        assert receiver.requests == 0
    [warning] = caplog.records  # once per streak
    assert warning.error == (  # type: ignore[attr-defined]
        f"proxy 127.0.0.1:{squid.port} (from https_proxy) refused CONNECT to "
        f"localhost:{receiver.port}: 403 Forbidden: the proxy's rules do not allow "
        f"localhost:{receiver.port}")


@pytest.mark.parametrize("kind", PROXIES, ids=lambda k: k.name)
def test_loki_down_behind_the_proxy_is_retried_like_loki_down(
        tmp_path: Path, kind: type[ForwardProxy], tls_loki: TlsLoki) -> None:
    with kind(tmp_path) as proxy, tls_loki.receiver() as receiver:
        receiver.refuse()
        sleeps = Sleeps(lambda n: receiver.accept() if n == 2 else None)
        result = push_via(tls_loki.config(receiver.url), {"HTTPS_PROXY": proxy.url}, "x",
                          sleep=sleeps)
        assert (result.outcome, result.attempts) == (Outcome.DELIVERED, 3)
        assert [e.line for e in receiver.entries] == ["x"]


# -- NO_PROXY and "direct", end to end -----------------------------------------------------------

def test_no_proxy_and_direct_skip_a_proxy_from_the_environment() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with LokiReceiver() as receiver:
        for env, proxy_url in (({"HTTP_PROXY": dead, "NO_PROXY": "example.com,127.0.0.0/8"}, ""),
                               ({"http_proxy": dead, "no_proxy": f"127.0.0.1:{receiver.port}"},
                                ""),
                               ({"HTTP_PROXY": dead}, "direct")):
            config = LokiConfig(url=receiver.url, proxy_url=proxy_url)
            assert push_via(config, env, "direct").attempts == 1
        assert len(receiver.entries) == 3

        client = HttpClient(receiver.url, timeout=5, ssl=None,
                            proxy=select_proxy(receiver.url, "", {"HTTP_PROXY": dead}))
        with pytest.raises(ConnectError) as info:
            asyncio.run(client.post(b"x", {}))
        assert str(info.value).startswith(f"cannot connect to proxy {dead[7:]} (from HTTP_PROXY) "
                                          f"for 127.0.0.1:{receiver.port}: ")


def test_the_agent_pushes_through_loki_proxy_url(tmp_path: Path) -> None:
    pod = PodLog(tmp_path, "proxied", "app-0", "app")

    async def scenario(receiver: LokiReceiver, proxy: ForwardProxy) -> None:
        config = make_config(tmp_path, receiver.url, loki={"proxy_url": proxy.url})
        async with running(config):
            pod.lines("via-proxy", 200)
            await until(lambda: len(receiver.entries) >= 200)

    with Tinyproxy(tmp_path) as proxy, LokiReceiver() as receiver:
        asyncio.run(scenario(receiver, proxy))
        assert {e.line for e in receiver.entries} == set(pod.written)
        assert all("tinyproxy" in h["Via"] for h in receiver.headers_seen)
