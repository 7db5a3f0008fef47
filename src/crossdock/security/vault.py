"""The credential vault: every connection secret encrypted with AES-256-GCM.

Keys form a keyring, primary first. Each ciphertext records the id of the key that sealed it, so during a
rotation reads go on under the old key while rows are re-sealed under the new one. The associated data binds
a ciphertext to its account, connection and secret name: a sealed value copied to another row does not open.

Keys come from CROSSDOCK_SECRET_KEY (comma-separated, primary first) or from a key file created at first start
in CROSSDOCK_HOME with mode 0600.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_FILE_NAME = "vault.keys"
_NONCE_BYTES = 12


class VaultError(Exception):
    """A secret could not be sealed or opened. The message never contains key or secret material."""


@dataclass(frozen=True)
class VaultKey:
    key: bytes

    @property
    def id(self) -> str:
        # A fingerprint, not the key: safe to store beside the ciphertext and to print.
        return hashlib.sha256(b"crossdock-vault-key:" + self.key).hexdigest()[:16]

    @classmethod
    def generate(cls) -> VaultKey:
        return cls(AESGCM.generate_key(bit_length=256))

    @classmethod
    def decode(cls, text: str) -> VaultKey:
        try:
            raw = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
        except ValueError:
            raise VaultError("a vault key is not valid urlsafe base64") from None
        if len(raw) != 32:
            raise VaultError(f"a vault key must be 32 bytes of urlsafe base64 (got {len(raw)} bytes)")
        return cls(raw)

    def encode(self) -> str:
        return base64.urlsafe_b64encode(self.key).decode().rstrip("=")

    def __repr__(self) -> str:
        return f"VaultKey(id={self.id})"


def _aad(account_id: str, connection_id: str, name: str) -> bytes:
    return f"crossdock/v1/{account_id}/{connection_id}/{name}".encode()


class Vault:
    def __init__(self, keys: list[VaultKey], key_file: Path | None = None) -> None:
        if not keys:
            raise VaultError("the vault has no key")
        self.keys = keys
        self.key_file = key_file

    @property
    def primary(self) -> VaultKey:
        return self.keys[0]

    def _find(self, key_id: str) -> VaultKey | None:
        for key in self.keys:
            if key.id == key_id:
                return key
        return None

    def _key(self, key_id: str) -> VaultKey:
        found = self._find(key_id)
        if found is None and self.key_file is not None and self.key_file.exists():
            # Another process may be rotating: it writes the new primary to the key file before it re-seals
            # anything, so reloading the file lets this process read on without a restart.
            self.keys = _read_key_file(self.key_file)
            found = self._find(key_id)
        if found is not None:
            return found
        raise VaultError(
            f"no vault key with id {key_id} is configured; add the key that sealed this secret to "
            "CROSSDOCK_SECRET_KEY (or the key file) and run 'crossdock keys rotate'"
        )

    def seal(self, plaintext: str, *, account_id: str, connection_id: str, name: str) -> tuple[str, bytes]:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self.primary.key).encrypt(
            nonce, plaintext.encode(), _aad(account_id, connection_id, name)
        )
        return self.primary.id, nonce + sealed

    def open(self, key_id: str, ciphertext: bytes, *, account_id: str, connection_id: str, name: str) -> str:
        key = self._key(key_id)
        try:
            plain = AESGCM(key.key).decrypt(
                ciphertext[:_NONCE_BYTES], ciphertext[_NONCE_BYTES:], _aad(account_id, connection_id, name)
            )
        except InvalidTag:
            raise VaultError(f"secret '{name}' of connection {connection_id} failed authentication") from None
        return plain.decode()

    # Key file management -------------------------------------------------------------------------------
    @classmethod
    def load(cls, env_keys: str | None, home: Path) -> Vault:
        if env_keys:
            return cls([VaultKey.decode(part) for part in env_keys.split(",") if part.strip()])
        path = home / KEY_FILE_NAME
        if not path.exists():
            home.mkdir(parents=True, exist_ok=True)
            _write_key_file(path, [VaultKey.generate()])
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise VaultError(f"{path} is readable by others (mode {mode:o}); run 'chmod 600 {path}'")
        return cls(_read_key_file(path), key_file=path)

    def add_primary(self, key: VaultKey) -> None:
        self.keys = [key, *[k for k in self.keys if k.id != key.id]]
        if self.key_file is not None:
            _write_key_file(self.key_file, self.keys)

    def retire_all_but_primary(self) -> list[str]:
        retired = [k.id for k in self.keys[1:]]
        self.keys = [self.primary]
        if self.key_file is not None:
            _write_key_file(self.key_file, self.keys)
        return retired


def _read_key_file(path: Path) -> list[VaultKey]:
    data = json.loads(path.read_text())
    return [VaultKey.decode(k) for k in data["keys"]]


def _write_key_file(path: Path, keys: list[VaultKey]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"keys": [k.encode() for k in keys]}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def new_secret_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)
