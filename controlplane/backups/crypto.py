"""age encryption of streams (X25519 recipients) with pyrage, in the standard age format.

pyrage's ``encrypt_io``/``decrypt_io`` copy between file objects in 64 KiB STREAM chunks, so
neither side is ever held whole in memory; the output decrypts with the `age` CLI.
Private keys are read from a file and never logged, printed or stored.
"""

from __future__ import annotations

import io
from typing import Any

import pyrage
from pyrage import x25519


class CryptoError(Exception):
    """Encryption or decryption failed; the message says what to check."""


def parse_recipients(keys: list[str]) -> list[Any]:
    try:
        return [x25519.Recipient.from_str(k.strip()) for k in keys]
    except Exception:
        raise CryptoError("invalid age recipient in config (expected age1...); "
                          "print the right one with `age-keygen -y key.txt`") from None


def load_identities(path: str) -> list[Any]:
    """Identities from an age key file (lines AGE-SECRET-KEY-1...; comments allowed)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [ln.strip() for ln in f if ln.strip().startswith("AGE-SECRET-KEY-")]
    except OSError as exc:
        raise CryptoError(f"cannot read age identity file {path}: {exc.strerror}") from None
    if not lines:
        raise CryptoError(f"{path} holds no age private key (AGE-SECRET-KEY-1...); "
                          "create one with `age-keygen -o key.txt`")
    try:
        return [x25519.Identity.from_str(ln) for ln in lines]
    except Exception:
        # The message must not echo the key material.
        raise CryptoError(f"{path} holds a malformed age private key") from None


def encrypt_stream(reader: io.RawIOBase, writer: io.RawIOBase, recipients: list[Any]) -> None:
    try:
        pyrage.encrypt_io(reader, writer, recipients)
    except pyrage.EncryptError as exc:
        raise CryptoError(f"age encryption failed: {exc}") from None


def decrypt_stream(reader: io.RawIOBase, writer: io.RawIOBase, identities: list[Any]) -> None:
    """Decrypt and authenticate every chunk; raise CryptoError naming the likely cause."""
    try:
        pyrage.decrypt_io(reader, writer, identities)
    except pyrage.DecryptError as exc:
        if "No matching keys" in str(exc):
            raise CryptoError("age decryption failed: the identity file does not match any "
                              "recipient of this backup (wrong key)") from None
        raise CryptoError(f"age decryption failed: {exc}") from None
    except OSError as exc:
        # pyrage reports a failed chunk authentication (tampering, truncation) and errors
        # raised by our writer alike as OSError; callers check their writer first.
        raise CryptoError("age decryption failed: the encrypted stream is corrupted or "
                          f"truncated ({exc})") from None
