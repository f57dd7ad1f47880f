"""Encryption at rest: AES-256-GCM (``cryptography``) of every stored event and snapshot.

A key is 32 random bytes in URL-safe base64 (:func:`generate_key`). Given a
list, the first key encrypts and every key decrypts (rotation). An encrypted
row is::

    MAGIC (4 bytes) | key id (4 bytes) | nonce (12 bytes) | ciphertext and tag

``MAGIC`` starts with a NUL byte, which JSON never does, so rows written
before encryption was turned on (plain JSON) are told apart and still read.
The key id is a hash prefix of the key (not the key): it names which key to
use, and says clearly when none of the given keys is the one. The row's
instance id, version and topic are the associated data: a row copied onto
another instance or version does not decrypt.

Keys never appear in a repr, an error or a log line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, final
from uuid import UUID

from durable_jobs._errors import ConfigurationError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "ENCRYPTION_KEY_ENV",
    "MAGIC",
    "Cipher",
    "EncryptedRowError",
    "generate_key",
    "is_encrypted",
    "keys_from_env",
    "make_cipher",
    "row_aad",
]

#: Where the command line reads the key (or a comma-separated list of keys).
ENCRYPTION_KEY_ENV: Final = "DURABLE_JOBS_ENCRYPTION_KEY"
MAGIC: Final = b"\x00dje"
_KEY_ID_SIZE: Final = 4
_NONCE_SIZE: Final = 12
_HEADER: Final = len(MAGIC) + _KEY_ID_SIZE + _NONCE_SIZE
_KEY_SIZE: Final = 32


def generate_key() -> str:
    """A new random encryption key: 32 bytes in URL-safe base64 (44 characters)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(_KEY_SIZE)).decode("ascii")


def is_encrypted(data: bytes) -> bool:
    """Whether a stored row's bytes are encrypted (else they are plain JSON)."""
    return bytes(data[: len(MAGIC)]) == MAGIC


class EncryptedRowError(Exception):
    """An encrypted row that cannot be decrypted (no key, or not the right key).

    The store turns it into a :class:`~durable_jobs.StoreError` naming the row.
    """

    #: Which row: ``event`` or ``snapshot``, and its version (set by the mapper).
    row: str = "row"
    version: int | None = None
    #: Whether one of the keys given is the row's by its key id, and yet it does not
    #: decrypt: the row was altered or moved, unless that key id is another key's too.
    altered: bool = False


def _aesgcm() -> type[AESGCM]:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        msg = (
            "Encryption at rest needs the 'cryptography' package: install "
            "durable-jobs[encryption] (or pip install cryptography)."
        )
        raise ConfigurationError(msg) from None
    return AESGCM


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"durable-jobs key id\x00" + key).digest()[:_KEY_ID_SIZE]


def _decode_key(value: object, position: int) -> bytes:
    where = f"encryption key #{position}"
    if isinstance(value, str):
        text = value.strip()
        try:
            raw = base64.b64decode(text.encode("ascii"), altchars=b"-_", validate=True)
        except (UnicodeEncodeError, binascii.Error, ValueError):
            raw = b""
    else:
        msg = f"The {where} must be a str (URL-safe base64), got a {type(value).__name__}."
        raise ConfigurationError(msg)
    if len(raw) != _KEY_SIZE:
        msg = (
            f"The {where} is not a key: a key is 32 random bytes in URL-safe base64 "
            "(44 characters); make one with durable_jobs.generate_key()."
        )
        raise ConfigurationError(msg)
    return raw


@final
class Cipher:
    """AES-256-GCM with one key to encrypt and all keys to decrypt."""

    __slots__ = ("_by_id", "_current", "_current_id")

    def __init__(self, keys: Sequence[bytes]) -> None:
        aesgcm = _aesgcm()
        if not keys:
            msg = "At least one encryption key is needed."
            raise ConfigurationError(msg)
        self._by_id: dict[bytes, Any] = {}
        for key in keys:
            self._by_id.setdefault(_key_id(key), aesgcm(key))
        self._current_id = _key_id(keys[0])
        self._current = self._by_id[self._current_id]

    @property
    def key_count(self) -> int:
        return len(self._by_id)

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(_NONCE_SIZE)
        sealed = bytes(self._current.encrypt(nonce, plaintext, aad))
        return MAGIC + self._current_id + nonce + sealed

    def decrypt(self, data: bytes, aad: bytes) -> bytes:
        data = bytes(data)
        if len(data) < _HEADER + 16:
            msg = "it is encrypted but too short to be a whole encrypted row"
            raise EncryptedRowError(msg)
        key_id = data[len(MAGIC) : len(MAGIC) + _KEY_ID_SIZE]
        aead = self._by_id.get(key_id)
        if aead is None:
            msg = (
                f"it is encrypted with a key that is not among the {self.key_count} "
                "encryption key(s) given"
            )
            raise EncryptedRowError(msg)
        nonce = data[len(MAGIC) + _KEY_ID_SIZE : _HEADER]
        try:
            return bytes(aead.decrypt(nonce, data[_HEADER:], aad))
        except Exception as exc:  # cryptography's InvalidTag: tampered, or moved
            msg = "it is encrypted and does not decrypt with the key given that its key id names"
            error = EncryptedRowError(msg)
            error.altered = True
            raise error from exc

    def __repr__(self) -> str:
        return f"<Cipher AES-256-GCM, {self.key_count} key(s)>"


def make_cipher(encryption_key: object) -> Cipher | None:
    """The cipher for an ``encryption_key`` option: None, a key, or a list of keys
    (the first encrypts, all decrypt). A malformed key is a ConfigurationError
    that never shows the key."""
    if encryption_key is None:
        return None
    if isinstance(encryption_key, str):
        keys: list[object] = [encryption_key]
    elif isinstance(encryption_key, list | tuple):
        keys = list(encryption_key)
    else:
        msg = (
            "encryption_key must be a key (str), a list of keys or None, "
            f"got a {type(encryption_key).__name__}."
        )
        raise ConfigurationError(msg)
    return Cipher([_decode_key(k, i) for i, k in enumerate(keys, 1)])


def keys_from_env(value: str | None) -> list[str] | None:
    """The keys of a ``DURABLE_JOBS_ENCRYPTION_KEY`` value (comma-separated), or None."""
    if value is None or not value.strip():
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def row_aad(originator_id: UUID | str, version: int, topic: str) -> bytes:
    """The associated data binding an encrypted row to its instance, version and topic."""
    oid = originator_id if isinstance(originator_id, UUID) else UUID(str(originator_id))
    return f"{oid}\x00{version}\x00{topic}".encode()
