"""`crossdock sandbox NAME ...`: build a sandbox from command-line options and serve it on loopback."""

from __future__ import annotations

import argparse
import sys

from crossdock.sandbox import SANDBOXES, create_sandbox_app
from crossdock.sandbox.common.config import SandboxConfig
from crossdock.sandbox.common.faults import FaultSpec
from crossdock.sandbox.common.server import serve


def build_config(
    *,
    orders: int = 0,
    seed: int = 1,
    token: str | None = None,
    webhook_url: str | None = None,
    faults: str | None = None,
    fast_limits: bool = False,
    extra: dict[str, str] | None = None,
) -> SandboxConfig:
    return SandboxConfig(
        seed=seed,
        orders=orders,
        token=token,
        webhook_url=webhook_url,
        faults=FaultSpec.parse(faults),
        fast_limits=fast_limits,
        extra=dict(extra or {}),
    )


def run_sandbox(
    name: str,
    port: int,
    orders: int = 0,
    seed: int = 1,
    token: str | None = None,
    webhook_url: str | None = None,
    faults: str | None = None,
    fast_limits: bool = False,
    extra: dict[str, str] | None = None,
) -> None:
    """Serve sandbox `name` on 127.0.0.1:`port` until interrupted, after printing how to reach it."""
    config = build_config(
        orders=orders,
        seed=seed,
        token=token,
        webhook_url=webhook_url,
        faults=faults,
        fast_limits=fast_limits,
        extra=extra,
    )
    app = create_sandbox_app(name, config)
    # A sandbox that made its own token exposes it as app.state.sandbox.token.
    shown_token = getattr(getattr(app.state, "sandbox", None), "token", None) or config.token
    base = f"http://127.0.0.1:{port}"
    lines = [
        f"crossdock sandbox {name}: {base}",
        f"  access token: {shown_token}",
        f"  admin API:    {base}/_sandbox/",
        f"  orders: {orders}  seed: {seed}  faults: {config.faults.describe()}"
        + ("  fast limits" if fast_limits else ""),
    ]
    if webhook_url:
        lines.append(f"  webhooks to:  {webhook_url}")
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
    serve(app, port)


def main(argv: list[str] | None = None) -> None:
    """`python -m crossdock.sandbox.cli NAME --port P ...`, for use without the hub's CLI."""
    parser = argparse.ArgumentParser(prog="python -m crossdock.sandbox.cli", description=__doc__)
    parser.add_argument("name", choices=sorted(SANDBOXES))
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--orders", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--token")
    parser.add_argument("--webhook-url")
    parser.add_argument("--faults", help="e.g. latency=50ms,5xx=0.2,429=0.1,dup_webhooks=0.3,seed=7")
    parser.add_argument("--fast-limits", action="store_true")
    parser.add_argument(
        "--extra", action="append", default=[], metavar="KEY=VALUE", help="sandbox-specific knob"
    )
    args = parser.parse_args(argv)
    extra: dict[str, str] = {}
    for item in args.extra:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--extra expects KEY=VALUE, got {item!r}")
        extra[key] = value
    try:
        run_sandbox(
            args.name,
            args.port,
            args.orders,
            args.seed,
            args.token,
            args.webhook_url,
            args.faults,
            args.fast_limits,
            extra,
        )
    except ValueError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    main()
