"""Fault injection: a parsed fault spec, a seeded fault source and an ASGI middleware applying it.

A sandbox is only useful for chaos tests if a failure can be replayed: every decision comes from one
`random.Random(spec.seed)` per stream (API requests, webhooks), so the same seed gives the same sequence.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from starlette.responses import PlainTextResponse, Response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

FaultKind = Literal["5xx", "429", "timeout", "malformed"]

# spec key -> dataclass field; probabilities are checked to lie in [0, 1].
_PROBABILITY_KEYS: dict[str, str] = {
    "5xx": "p_5xx",
    "429": "p_429",
    "timeout": "p_timeout",
    "malformed": "p_malformed",
    "dup_webhooks": "p_dup_webhooks",
    "reorder_webhooks": "p_reorder_webhooks",
}


def _parse_seconds(key: str, value: str) -> float:
    text = value.strip().lower()
    try:
        if text.endswith("ms"):
            seconds = float(text[:-2]) / 1000.0
        elif text.endswith("s"):
            seconds = float(text[:-1])
        else:
            seconds = float(text)
    except ValueError:
        raise ValueError(f"fault spec: {key}={value!r} is not a duration (use 50ms, 0.05s or 0.05)") from None
    if seconds < 0:
        raise ValueError(f"fault spec: {key}={value!r} must not be negative")
    return seconds


@dataclass(frozen=True)
class FaultSpec:
    latency_s: float = 0.0
    p_5xx: float = 0.0
    p_429: float = 0.0
    p_timeout: float = 0.0
    p_malformed: float = 0.0
    p_dup_webhooks: float = 0.0
    p_reorder_webhooks: float = 0.0
    seed: int = 0
    timeout_s: float = 30.0

    @classmethod
    def parse(cls, spec: str | None) -> FaultSpec:
        """Parse "latency=50ms,5xx=0.2,429=0.1,timeout=0.05,malformed=0.01,dup_webhooks=0.3,seed=7"."""
        if spec is None or not spec.strip():
            return cls()
        values: dict[str, Any] = {}
        for raw in spec.split(","):
            part = raw.strip()
            if not part:
                continue
            if "=" not in part:
                raise ValueError(f"fault spec: {part!r} is not key=value")
            key, _, value = (s.strip() for s in part.partition("="))
            if key == "latency":
                values["latency_s"] = _parse_seconds(key, value)
            elif key in ("timeout_s", "timeout_after"):
                values["timeout_s"] = _parse_seconds(key, value)
            elif key == "seed":
                try:
                    values["seed"] = int(value)
                except ValueError:
                    raise ValueError(f"fault spec: seed={value!r} is not an integer") from None
            elif key in _PROBABILITY_KEYS:
                try:
                    p = float(value)
                except ValueError:
                    raise ValueError(f"fault spec: {key}={value!r} is not a probability") from None
                if not 0.0 <= p <= 1.0:
                    raise ValueError(f"fault spec: {key}={value!r} must be between 0 and 1")
                values[_PROBABILITY_KEYS[key]] = p
            else:
                known = ", ".join(["latency", "timeout_s", "seed", *_PROBABILITY_KEYS])
                raise ValueError(f"fault spec: unknown key {key!r} (known: {known})")
        total = sum(values.get(f, 0.0) for f in ("p_5xx", "p_429", "p_timeout", "p_malformed"))
        if total > 1.0:
            raise ValueError(f"fault spec: 5xx+429+timeout+malformed add up to {total}, more than 1")
        return cls(**values)

    def describe(self) -> str:
        """The spec back in the parse syntax, only the non-default knobs (for logs)."""
        default = FaultSpec()
        names = {v: k for k, v in _PROBABILITY_KEYS.items()} | {"latency_s": "latency"}
        parts = [
            f"{names.get(f.name, f.name)}={getattr(self, f.name)}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        ]
        return ",".join(parts) or "none"


class Faults:
    """Seeded fault decisions; one `draw()` per API request, one draw per webhook decision."""

    def __init__(self, spec: FaultSpec) -> None:
        self.spec = spec
        # Separate streams so that webhook traffic does not shift which API request fails, and vice versa.
        self._request_rng = random.Random(spec.seed)
        self._webhook_rng = random.Random(spec.seed ^ 0x5EED)
        self._requests = 0
        self.log: list[tuple[int, str]] = []

    def draw(self) -> FaultKind | None:
        self._requests += 1
        # A single uniform draw per request keeps the sequence identical whatever the probabilities.
        u = self._request_rng.random()
        s = self.spec
        kind: FaultKind | None = None
        edge = 0.0
        for name, p in (
            ("5xx", s.p_5xx),
            ("429", s.p_429),
            ("timeout", s.p_timeout),
            ("malformed", s.p_malformed),
        ):
            edge += p
            if u < edge:
                kind = name  # type: ignore[assignment]
                break
        if kind is not None:
            self.log.append((self._requests, kind))
        return kind

    def dup_webhook(self) -> bool:
        hit = self._webhook_rng.random() < self.spec.p_dup_webhooks
        if hit:
            self.log.append((self._requests, "dup_webhook"))
        return hit

    def reorder_webhook(self) -> bool:
        hit = self._webhook_rng.random() < self.spec.p_reorder_webhooks
        if hit:
            self.log.append((self._requests, "reorder_webhook"))
        return hit


class FaultMiddleware:
    """Pure ASGI middleware that injects the faults drawn from `faults` into non-exempt HTTP requests."""

    def __init__(
        self,
        app: ASGIApp,
        faults: Faults,
        *,
        error_5xx: Callable[[], Response],
        error_429: Callable[[], Response],
        exempt_prefixes: tuple[str, ...] = ("/_sandbox",),
    ) -> None:
        self.app = app
        self.faults = faults
        self.error_5xx = error_5xx
        self.error_429 = error_429
        self.exempt_prefixes = exempt_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith(self.exempt_prefixes):
            await self.app(scope, receive, send)
            return
        spec = self.faults.spec
        if spec.latency_s > 0:
            await asyncio.sleep(spec.latency_s)
        kind = self.faults.draw()
        if kind == "5xx":
            await self.error_5xx()(scope, receive, send)
        elif kind == "429":
            response = self.error_429()
            if "retry-after" not in response.headers:
                response.headers["Retry-After"] = "1"
            await response(scope, receive, send)
        elif kind == "timeout":
            # What a client sees when a gateway gives up on a hung upstream.
            await asyncio.sleep(spec.timeout_s)
            await PlainTextResponse("504 Gateway Time-out", status_code=504)(scope, receive, send)
        elif kind == "malformed":
            await self._truncated(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _truncated(self, scope: Scope, receive: Receive, send: Send) -> None:
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        if start is None:
            return
        body = b"".join(chunks)
        cut = body[: len(body) // 2]
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(cut)).encode()))
        await send({"type": "http.response.start", "status": start["status"], "headers": headers})
        await send({"type": "http.response.body", "body": cut})
