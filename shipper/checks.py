"""Start-up checks of the files the config names: each one opened or loaded as the agent will.

config.py checks that each value is well-formed; this checks that what it names is usable on
this machine, so that `run` and `check-config` fail at once naming the key and the reason, not
with a traceback or at the first push. Run once at start, never on the hot path.
"""

from __future__ import annotations

import errno
import os
import ssl
import stat
import tempfile
from pathlib import Path
from typing import Literal

from shipper.config import Config, ConfigError

TLSRole = Literal["ca_file", "cert_file", "key_file"]  # named as in loki.tls

_WORDS = {
    errno.ENOENT: "does not exist",
    errno.ENOTDIR: "does not exist (a part of its path is not a directory)",
    errno.EACCES: "is not readable (permission denied)",
    errno.EISDIR: "is a directory, expected a file",
}


def _describe(exc: OSError) -> str:
    return _WORDS.get(exc.errno or 0, exc.strerror or str(exc))


def file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why `path` is not a readable regular file, in words; None if it is one."""
    try:
        # Non-blocking: opening a FIFO named by mistake would otherwise hang the start.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return _describe(exc)
    try:
        mode = os.fstat(fd).st_mode
    finally:
        os.close(fd)
    if stat.S_ISDIR(mode):
        return _WORDS[errno.EISDIR]
    return None if stat.S_ISREG(mode) else "is not a regular file"


class _Encrypted(Exception):
    """OpenSSL asked for the passphrase of a key."""


def _refuse_passphrase() -> str:
    raise _Encrypted


def _openssl(exc: ssl.SSLError) -> str:
    """OpenSSL's reason in words, " (no certificate or crl found)", without its C source line;
    empty when it gives none (a file that is not PEM at all)."""
    return f" ({str(exc.reason).lower().replace('_', ' ')})" if exc.reason else ""


def tls_problem(ca_file: str, cert_file: str, key_file: str) -> tuple[TLSRole, str] | None:
    """The first of the TLS files (empty: not used) that OpenSSL cannot load, and why; None if
    all load. Each is loaded on its own, so that the reason names the right one."""
    files: tuple[tuple[TLSRole, str], ...] = (
        ("ca_file", ca_file), ("cert_file", cert_file), ("key_file", key_file))
    for role, path in files:
        if path and (problem := file_problem(path)):
            return role, problem
    if ca_file:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=ca_file)
        except ssl.SSLError as exc:
            return "ca_file", f"is not a PEM CA certificate{_openssl(exc)}"
    if not cert_file:
        return None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=cert_file)
    except ssl.SSLError as exc:
        return "cert_file", f"is not a PEM certificate{_openssl(exc)}"
    key_role: TLSRole = "key_file" if key_file else "cert_file"
    try:
        # With no passphrase callback, OpenSSL would prompt on a terminal for one.
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(
            cert_file, key_file or None, password=_refuse_passphrase)
    except _Encrypted:
        return key_role, "holds an encrypted key: the agent needs it unencrypted"
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            return key_role, f"does not match the certificate in {cert_file!r}"
        return key_role, f"is not a PEM private key{_openssl(exc)}"
    return None


def _check_secret(key: str, path: str) -> None:
    """A token or password file: sent in an HTTP header, so printable ASCII. Its content is
    never part of a message."""
    problem = file_problem(path)
    if problem is None:
        try:
            secret = Path(path).read_bytes().decode("utf-8", "replace").strip()
        except OSError as exc:
            problem = _describe(exc)
        else:
            if not secret:
                problem = "is empty"
            elif not (secret.isascii() and secret.isprintable()):  # what the pusher requires
                problem = "holds characters not allowed in an HTTP header (printable ASCII only)"
    if problem:
        raise ConfigError(key, f"{path!r} {problem}")


def _check_positions(path: str) -> None:
    """The positions file is written as a temp file beside it, renamed into place, in a
    directory created if missing: its nearest existing ancestor must take a new file."""
    key = "positions.path"
    target = Path(path)
    try:
        if target.is_dir():
            raise ConfigError(key, f"{path!r} is a directory; name the file, e.g. "
                              f"{str(target / 'positions.json')!r}")
        existing = next(p for p in target.parents if p.exists())
        if not existing.is_dir():
            raise ConfigError(key, f"{str(existing)!r} is not a directory")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise ConfigError(key, f"cannot write the file {path!r}: {exc.strerror or exc}") from None


def check_files(config: Config) -> None:
    """Every file the config names, loaded as the agent will: raises ConfigError naming the
    key. The kubeconfig is checked where it is loaded (kube/watch.py), when the watch is on."""
    loki = config.loki
    for key, path in (("loki.bearer_token_file", loki.bearer_token_file),
                      ("loki.basic_auth.password_file", loki.basic_auth.password_file)):
        if path:
            _check_secret(key, path)
    if problem := tls_problem(loki.tls.ca_file, loki.tls.cert_file, loki.tls.key_file):
        role, reason = problem
        raise ConfigError(f"loki.tls.{role}", f"{getattr(loki.tls, role)!r} {reason}")
    if config.positions.path:
        _check_positions(config.positions.path)


__all__ = ["check_files", "file_problem", "tls_problem"]
