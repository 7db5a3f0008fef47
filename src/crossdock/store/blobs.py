"""Blob store for label and document bytes: a content-addressed directory by default."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

_KEY = re.compile(r"^[0-9a-f]{64}$")


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError(f"'{key}' is not a blob key")
        return self.root / key[:2] / key

    def put(self, data: bytes) -> str:
        """Store bytes; the key is their SHA-256, so storing the same label twice keeps one copy."""
        key = hashlib.sha256(data).hexdigest()
        path = self._path(key)
        if path.exists():
            return key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{key}.{os.getpid()}.tmp")
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        return key

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(f"blob {key} is missing from {self.root}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).exists()
