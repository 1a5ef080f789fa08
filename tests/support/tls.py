"""Throwaway certificates and keys for TLS tests, made with the openssl command line."""

from __future__ import annotations

import subprocess
from pathlib import Path


def make_cert(directory: Path, name: str, san: str = "IP:127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate and its unencrypted key, valid for `san` (e.g.
    "DNS:localhost") only."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", f"/CN={name}", "-addext", f"subjectAltName={san}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def encrypt_key(key: Path, passphrase: str) -> Path:
    """The same key, encrypted with a passphrase."""
    encrypted = key.with_name(f"{key.stem}-encrypted.key")
    subprocess.run(["openssl", "pkey", "-in", str(key), "-aes256", "-passout",
                    f"pass:{passphrase}", "-out", str(encrypted)], check=True, capture_output=True)
    return encrypted
