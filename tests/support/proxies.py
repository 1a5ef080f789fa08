"""Real forward proxies for tests: tinyproxy and squid, each started in the foreground on its own
port on 127.0.0.1 with a config file under the test's tmp_path, and stopped at the end.

A missing binary skips the test on a developer's machine, and fails it where SHIPPER_CI=1 (set
by .ci/run, which installs both): CI never passes by skipping.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.faults import free_port

_SBIN = os.pathsep.join(["/usr/local/sbin", "/usr/sbin", "/sbin"])  # squid lives in sbin
_names = itertools.count()
_HELPERS = "/usr/lib/squid"


def require(binary: str) -> str:
    path = shutil.which(binary, path=f"{os.environ.get('PATH', '')}{os.pathsep}{_SBIN}")
    if path is None:
        install = "apt-get install -y tinyproxy squid"
        if os.environ.get("SHIPPER_CI") == "1":
            pytest.fail(f"{binary} is not installed, and CI must run the proxy tests: {install}")
        pytest.skip(f"{binary} is not installed ({install})")
    return path


class ForwardProxy:
    """`with Tinyproxy(tmp_path) as proxy:` ... push through `proxy.url` ... `proxy.log()`."""

    name = ""

    def __init__(self, tmp_path: Path, *, user: str = "", password: str = "") -> None:
        self.binary = require(self.name)
        self.dir = tmp_path / self.name
        self.dir.mkdir(exist_ok=True)
        self.user, self.password = user, password
        self.port = 0
        self._log = self.dir / "proxy.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Without credentials: a test adds them where it means to."""
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self._log.read_text(errors="replace")

    def config(self) -> str:
        raise NotImplementedError

    def command(self, config: Path) -> list[str]:
        raise NotImplementedError

    def __enter__(self) -> ForwardProxy:
        self.port = free_port()
        config = self.dir / "proxy.conf"
        config.write_text(self.config())
        self._log.touch()
        self._log.chmod(0o666)  # squid reopens it as /dev/stderr after dropping root
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(self.command(config), stdout=log, stderr=log,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=1):
                return self
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"{self.name} did not start:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: helpers go with it
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


class Tinyproxy(ForwardProxy):
    name = "tinyproxy"

    def config(self) -> str:
        # No Allow, Deny or ConnectPort line: every client and every CONNECT port is allowed.
        lines = [f"Port {self.port}", "Listen 127.0.0.1", "Timeout 30", "MaxClients 20",
                 "LogLevel Connect"]
        if self.user:
            lines.append(f"BasicAuth {self.user} {self.password}")
        return "\n".join(lines) + "\n"

    def command(self, config: Path) -> list[str]:
        return [self.binary, "-d", "-c", str(config)]


class Squid(ForwardProxy):
    name = "squid"

    def __init__(self, tmp_path: Path, *, deny_connect: bool = False,
                 ask_credentials: bool = False) -> None:
        super().__init__(tmp_path)
        self.deny_connect = deny_connect
        self.ask_credentials = ask_credentials
        # Squid names its shared memory segments after the service: one per proxy, so that
        # parallel runs never meet in /dev/shm.
        self.service = f"shipper{os.getpid()}n{next(_names)}"

    def config(self) -> str:
        return "\n".join([
            f"http_port 127.0.0.1:{self.port}",
            *(["http_access deny CONNECT"] if self.deny_connect else []),
            # Any user and password pass (the helper reads no file, which squid could not read
            # under tmp_path once it has dropped root); none at all gets a 407.
            *([f"auth_param basic program {_HELPERS}/basic_fake_auth",
               "acl someone proxy_auth REQUIRED", "http_access deny !someone"]
              if self.ask_credentials else []),
            "http_access allow all",
            "cache deny all",  # a forwarder, no cache: memory only, nothing on disk
            "memory_cache_shared off",
            "shared_transient_entries_limit 0",
            "cache_log /dev/stderr",  # reopened after dropping root: proxy.log is 0666
            "access_log stdio:/dev/stderr",
            "cache_store_log none",
            "pid_filename none",
            "coredump_dir none",
            "pinger_enable off",
            "shutdown_lifetime 0 seconds",
        ]) + "\n"

    def command(self, config: Path) -> list[str]:
        # -N: no daemon, in the foreground; started as root, it drops to its effective user.
        return [self.binary, "-N", "-n", self.service, "-f", str(config)]

    def __exit__(self, *exc: object) -> None:
        super().__exit__()
        for segment in Path("/dev/shm").glob(f"{self.service}-*"):
            segment.unlink(missing_ok=True)
