"""Start-up checks: every key that names a file or an address fails at start with the key and
the reason, exit code 2, from `check-config` and from `run` alike; never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.agent import config_dict, start_subprocess
from tests.support.faults import NOBODY, free_port, unprivileged_prefix
from tests.support.tls import encrypt_key, make_cert

HTTPS = "https://127.0.0.1:9/loki/api/v1/push"  # never reached: the checks fail first
SECRET = "s3cr3t-t0ken"  # never part of a message


@dataclass(frozen=True)
class Certs:
    cert: Path
    key: Path
    other_key: Path  # of another certificate
    encrypted_key: Path  # `key`, encrypted


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    directory = tmp_path_factory.mktemp("certs")
    cert, key = make_cert(directory, "loki")
    _, other_key = make_cert(directory, "other")
    return Certs(cert, key, other_key, encrypt_key(key, SECRET))


def write(root: Path, name: str, content: bytes) -> str:
    path = root / name
    path.write_bytes(content)
    return str(path)


def tls(**files: str) -> dict[str, Any]:
    return {"loki": {"url": HTTPS, "tls": files}}


def kubeconfig(root: Path, content: bytes) -> dict[str, Any]:
    return {"kubernetes": {"enabled": "true", "node_name": "node-1",
                           "kubeconfig": write(root, "kubeconfig", content)}}


KUBECONFIG = b"""\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {client-certificate: missing.crt, client-key: missing.key}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
"""

Sections = Callable[[Path, Certs], dict[str, Any]]
CASES: dict[str, tuple[str, str, Sections]] = {
    "ca-file-is-a-directory": (
        "loki.tls.ca_file", "is a directory", lambda root, c: tls(ca_file=str(root))),
    "ca-file-not-pem": (
        "loki.tls.ca_file", "is not a PEM CA certificate",
        lambda root, c: tls(ca_file=write(root, "ca.crt", b"not a certificate\n"))),
    "cert-file-holds-no-certificate": (
        "loki.tls.cert_file", "is not a PEM certificate",
        lambda root, c: tls(cert_file=str(c.key), key_file=str(c.key))),
    "key-file-of-another-certificate": (
        "loki.tls.key_file", "does not match the certificate",
        lambda root, c: tls(cert_file=str(c.cert), key_file=str(c.other_key))),
    "key-file-encrypted": (
        "loki.tls.key_file", "encrypted",
        lambda root, c: tls(cert_file=str(c.cert), key_file=str(c.encrypted_key))),
    "key-file-not-a-key": (
        "loki.tls.key_file", "is not a PEM private key",
        lambda root, c: tls(cert_file=str(c.cert), key_file=write(root, "k", b"key\n"))),
    "token-file-missing": (
        "loki.bearer_token_file", "does not exist",
        lambda root, c: {"loki": {"bearer_token_file": str(root / "missing")}}),
    "token-file-is-a-directory": (
        "loki.bearer_token_file", "is a directory",
        lambda root, c: {"loki": {"bearer_token_file": str(root)}}),
    "token-file-empty": (
        "loki.bearer_token_file", "is empty",
        lambda root, c: {"loki": {"bearer_token_file": write(root, "token", b"\n")}}),
    "token-file-with-a-control-character": (
        "loki.bearer_token_file", "characters not allowed in an HTTP header",
        lambda root, c: {"loki": {"bearer_token_file": write(
            root, "token", SECRET.encode() + b"\x01\n")}}),
    "password-file-not-ascii": (
        "loki.basic_auth.password_file", "characters not allowed in an HTTP header",
        lambda root, c: {"loki": {"basic_auth": {"username": "u", "password_file": write(
            root, "password", f"{SECRET}-\u00e9".encode())}}}),
    "password-file-is-a-directory": (
        "loki.basic_auth.password_file", "is a directory",
        lambda root, c: {"loki": {"basic_auth": {"username": "u", "password_file": str(root)}}}),
    "kubeconfig-is-a-directory": (
        "kubernetes.kubeconfig", "is a directory",
        lambda root, c: {"kubernetes": {"enabled": "true", "node_name": "node-1",
                                        "kubeconfig": str(root)}}),
    "kubeconfig-not-yaml": (
        "kubernetes.kubeconfig", "is not valid YAML",
        lambda root, c: kubeconfig(root, b"clusters: [\n")),
    "kubeconfig-not-a-kubeconfig": (
        "kubernetes.kubeconfig", "is not a kubeconfig",
        lambda root, c: kubeconfig(root, b"just some text\n")),
    "kubeconfig-without-current-context": (
        "kubernetes.kubeconfig", "No current context",
        lambda root, c: kubeconfig(root, KUBECONFIG)),
    "kubeconfig-naming-missing-cert-files": (
        "kubernetes.kubeconfig", "its client-certificate",
        lambda root, c: kubeconfig(root, KUBECONFIG + b"current-context: x\n")),
    "positions-path-is-a-directory": (
        "positions.path", "is a directory", lambda root, c: {"positions": {"path": str(root)}}),
    "positions-parent-is-a-file": (
        "positions.path", "is not a directory",
        lambda root, c: {"positions": {"path": write(root, "file", b"") + "/positions.json"}}),
    "listen-port-out-of-range": (
        "server.listen", "out of range", lambda root, c: {"server": {"listen": "127.0.0.1:70000"}}),
    "listen-host-unresolvable": (
        "server.listen", "cannot resolve the host",
        lambda root, c: {"server": {"listen": "no-such-host.invalid:9080"}}),
    "listen-host-not-of-this-machine": (
        "server.listen", "not an address of this machine",
        lambda root, c: {"server": {"listen": "192.0.2.1:9080"}}),  # TEST-NET-1, RFC 5737
}


def write_config(root: Path, sections: dict[str, Any]) -> Path:
    raw = config_dict(root, "http://127.0.0.1:9/loki/api/v1/push")
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def both_commands(config: Path, prefix: Sequence[str] = ()) -> dict[str, tuple[int, str]]:
    """`check-config` and `run` on the same config, side by side: exit code and stderr."""
    procs = {command: start_subprocess(config, command=command, prefix=prefix)
             for command in ("check-config", "run")}
    results = {}
    for command, proc in procs.items():
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        results[command] = proc.returncode, err.decode(errors="replace")
    return results


def assert_invalid(results: dict[str, tuple[int, str]], key: str, reason: str) -> None:
    for command, (code, err) in results.items():
        last = err.strip().splitlines()[-1] if err.strip() else ""
        assert code == 2, f"{command} exited {code}:\n{err}"
        assert last.startswith(f"shipper: invalid config: config key '{key}': "), err
        assert reason in last, err
        assert "Traceback" not in err and "Error(" not in err, err  # words, not Python's
        assert SECRET not in err


@pytest.mark.parametrize("case", CASES)
def test_an_unusable_file_or_address_fails_at_start_naming_the_key(
        tmp_path: Path, certs: Certs, case: str) -> None:
    key, reason, sections = CASES[case]
    assert_invalid(both_commands(write_config(tmp_path, sections(tmp_path, certs))), key, reason)


def test_usable_files_pass_and_a_port_in_use_fails_at_start(tmp_path: Path,
                                                            certs: Certs) -> None:
    port = free_port()
    config = write_config(tmp_path, {
        "loki": {"url": HTTPS, "tls": {"ca_file": str(certs.cert), "cert_file": str(certs.cert),
                                       "key_file": str(certs.key)},
                 "basic_auth": {"username": "u",
                                "password_file": write(tmp_path, "password", b"pass\n")}},
        "server": {"listen": f"127.0.0.1:{port}"}})
    check = start_subprocess(config, command="check-config")
    out, err = check.communicate(timeout=30)
    assert check.returncode == 0, err.decode()
    assert out.decode().strip() == f"{config}: ok"
    with socket.socket() as taken:  # another process listening there, as a second agent would
        taken.bind(("127.0.0.1", port))
        taken.listen()
        assert_invalid(both_commands(config), "server.listen", "already in use")


def _unprivileged_port() -> int:
    start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    if start == 0:
        pytest.skip("every port is unprivileged on this machine")
    return start - 1


PERMISSION_CASES: dict[str, tuple[str, str, Callable[[Path, int], dict[str, Any]]]] = {
    "token-file-unreadable": (
        "loki.bearer_token_file", "is not readable (permission denied)",
        lambda root, other: {"loki": {"bearer_token_file": _owned(
            Path(write(root, "token", SECRET.encode())), other, 0o600)}}),
    "positions-directory-unwritable": (
        "positions.path", "Permission denied",
        lambda root, other: {"positions": {"path": _owned(
            _mkdir(root / "state"), other, 0o755) + "/positions.json"}}),
    "listen-port-privileged": (
        "server.listen", "permission denied",
        lambda root, other: {"server": {"listen": f"127.0.0.1:{_unprivileged_port()}"}}),
}


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _owned(path: Path, uid: int, mode: int) -> str:
    os.chown(path, uid, -1)
    path.chmod(mode)
    return str(path)


@pytest.mark.parametrize("case", PERMISSION_CASES)
def test_permissions_are_checked_as_the_agent_runs(shared_root: Path, case: str) -> None:
    prefix, agent_uid = unprivileged_prefix()
    os.chown(shared_root, agent_uid, -1)  # the rest of the config is usable by the agent
    key, reason, sections = PERMISSION_CASES[case]
    config = write_config(shared_root, sections(shared_root, NOBODY if agent_uid == 0 else 0))
    assert_invalid(both_commands(config, prefix), key, reason)
