"""Webhook ingest: signed Shopify order webhooks per second into `crossdock serve`, against a bare ASGI endpoint.

`wrk` (a load generator written in C, from Debian's `wrk` package) posts Shopify `orders/create` and
`orders/updated` webhooks at a fixed number of open connections for a fixed time. The bodies are orders rendered
by the Shopify sandbox (crossdock.sandbox.shopify), each signed as Shopify signs them: `X-Shopify-Hmac-Sha256` is
the base64 HMAC-SHA256 of the raw body with the connection's API secret (the app's client secret); every request
has its own `X-Shopify-Webhook-Id`, and `X-Shopify-Topic` and `X-Shopify-Shop-Domain` as Shopify sends them.

In the same run, on the same machine, each target runs as its own process under uvicorn with the same options
(`crossdock serve` calls `uvicorn.run(app, host=, port=, log_level=)`):
- bare: an ASGI app that reads the body and answers 200, run before and after the hub (the rate is their mean);
- `crossdock serve --no-workers` on a fresh SQLite file, then on PostgreSQL (a database of the benchmark's own,
  dropped and created again before its run and dropped at the end). Job workers stay out of the server process,
  as in a scaled-out deployment (DESIGN.md): what is measured is the webhook's way into the inbox.

Lost = acknowledged - stored: wrk's Lua script keeps the inbox id of every 2xx answer, and after the server has
stopped the benchmark reads the inbox and counts the acknowledged ids that are not there. Latency is wrk's, from
sending a request to its whole answer. Goals: hub rate >= 0.30 x bare rate, p99 <= 25 ms, 0 lost.

    .venv/bin/python bench/webhook_ingest.py                           # 30 s per target, 8 connections
    .venv/bin/python bench/webhook_ingest.py --seconds 60 --connections 16 --json
    .venv/bin/python bench/webhook_ingest.py --no-postgres             # SQLite only

wrk must be on PATH: `apt-get install wrk` on Debian or Ubuntu, `brew install wrk` on macOS.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import backfill  # bench/backfill.py: recreate_postgres, the benchmark database's drop and create
from procs import tree_cpu_seconds

SHOP = "ingest-bench.myshopify.com"
API_SECRET = "ingest-bench-client-secret-0000000000"
DEFAULT_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/crossdock_ingest_bench"
GOAL_RATIO = 0.30
GOAL_P99_MS = 25.0
BODIES = 200  # distinct signed bodies, cycled through by the load generator

# The load generator's script. init() loads the signed bodies; request() gives each request its own webhook id;
# response() counts statuses and keeps the inbox id of every 2xx answer; done() (in wrk's main thread) gathers
# the threads' ids into BENCH_OUT and prints one JSON line of totals and latency percentiles (microseconds).
WRK_SCRIPT = r"""
local bodies = {}
local counter = 0
acked = {}
ok = 0
statuses = {}
thread_id = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_id", #threads)
end

function init(args)
  local dir = os.getenv("BENCH_DATA")
  for line in io.lines(dir .. "/index.tsv") do
    local topic, sig, file = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)$")
    local f = io.open(dir .. "/" .. file, "rb")
    bodies[#bodies + 1] = {topic = topic, sig = sig, body = f:read("*a")}
    f:close()
  end
  shop = os.getenv("BENCH_SHOP")
  run = os.getenv("BENCH_RUN")
end

function request()
  counter = counter + 1
  local b = bodies[(counter % #bodies) + 1]
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["X-Shopify-Topic"] = b.topic,
    ["X-Shopify-Hmac-Sha256"] = b.sig,
    ["X-Shopify-Shop-Domain"] = shop,
    ["X-Shopify-API-Version"] = "2025-01",
    ["X-Shopify-Webhook-Id"] = run .. "-" .. thread_id .. "-" .. counter,
  }, b.body)
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if status >= 200 and status < 300 then
    ok = ok + 1
    local id = body:match('"inbox_id":%s*"([^"]+)"')
    if id then acked[#acked + 1] = id end
  end
end

function done(summary, latency, requests)
  local out = io.open(os.getenv("BENCH_OUT"), "w")
  local total_ok = 0
  local codes = {}
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    for _, id in ipairs(thread:get("acked")) do out:write(id, "\n") end
    for code, n in pairs(thread:get("statuses")) do codes[code] = (codes[code] or 0) + n end
  end
  out:close()
  local parts = {}
  for code, n in pairs(codes) do parts[#parts + 1] = string.format('"%s":%d', code, n) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"ok":%d,"duration_us":%d,"statuses":{%s},' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, total_ok, summary.duration, table.concat(parts, ","),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


# -- the bare endpoint (its own process) ----------------------------------------------------------------------


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body and answers 200 with a small JSON body; nothing else."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": b'{"stored":true}'})


def serve_bare(port: int, log_level: str, processes: int) -> None:
    import uvicorn

    # The options `crossdock serve` gives uvicorn.run (crossdock/cli.py); with several processes, as
    # `crossdock serve --processes N` starts them (uvicorn's workers, the app named by an import string).
    if processes > 1:
        uvicorn.run(
            f"{Path(__file__).stem}:bare_app",
            app_dir=str(Path(__file__).parent),
            workers=processes,
            host="127.0.0.1",
            port=port,
            log_level=log_level,
        )
        return
    uvicorn.run(bare_app, host="127.0.0.1", port=port, log_level=log_level)


# -- webhook bodies -------------------------------------------------------------------------------------------


def sign(body: bytes, secret: str) -> str:
    """X-Shopify-Hmac-Sha256: base64 of the HMAC-SHA256 of the raw body (shopify.dev, 'Verify webhooks')."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def write_bodies(directory: Path, count: int, seed: int) -> None:
    """`count` order bodies rendered by the Shopify sandbox, half as created and half as updated since, each
    signed, listed in index.tsv (topic, signature, file) for the load generator's script."""
    from crossdock.sandbox.common import SandboxConfig
    from crossdock.sandbox.shopify.app import create_app

    state = create_app(SandboxConfig(seed=seed, orders=0, extra={"shop": SHOP})).state.sandbox
    lines = []
    for i in range(count):
        order = state.create_order()
        topic = "orders/create"
        if i % 2:
            state.update_order(order, {"note": f"Leave at the door ({i})", "tags": ["bench"]})
            topic = "orders/updated"
        body = json.dumps(state.render(order), ensure_ascii=False, separators=(",", ":")).encode()
        name = f"body-{i:04d}.json"
        (directory / name).write_bytes(body)
        lines.append(f"{topic}\t{sign(body, API_SECRET)}\t{name}\n")
    (directory / "index.tsv").write_text("".join(lines))
    (directory / "bench.lua").write_text(WRK_SCRIPT)


# -- the hub's database ---------------------------------------------------------------------------------------


def _settings(home: Path, database_url: str | None) -> Any:
    from crossdock.config import Settings

    return Settings(home=home, database_url=database_url, log_level="WARNING")


async def _prepare(home: Path, database_url: str | None) -> uuid.UUID:
    """Migrate the database and create an account with a Shopify connection whose API secret signs the hooks."""
    from crossdock.hub import Hub
    from crossdock.store import repo
    from crossdock.store.migrate import upgrade

    hub = Hub.from_settings(_settings(home, database_url))
    try:
        await upgrade(hub.db)
        async with hub.db.transaction() as session:
            account = await repo.create_account(session, "Ingest bench")
            connection = await repo.Tenant(session, account.id).create_connection(
                connector="shopify",
                name="Ingest bench shop",
                vault=hub.vault,
                settings={"shop": SHOP},
                secrets={"access_token": "shpat_ingest_bench", "api_secret": API_SECRET},
            )
        return connection.id
    finally:
        await hub.close()


async def _stored(home: Path, database_url: str | None, connection_id: uuid.UUID) -> dict[str, Any]:
    """The inbox rows of the connection: their ids, and how many are not originals."""
    from sqlalchemy import select

    from crossdock.hub import Hub
    from crossdock.store import tables as t

    hub = Hub.from_settings(_settings(home, database_url))
    try:
        async with hub.db.session() as session:
            rows = (
                await session.execute(
                    select(t.InboxMessage.id, t.InboxMessage.duplicate_of).where(
                        t.InboxMessage.connection_id == connection_id
                    )
                )
            ).all()
    finally:
        await hub.close()
    return {
        "ids": {str(row_id) for row_id, _ in rows},
        "duplicates": sum(1 for _, original in rows if original is not None),
    }


# -- processes and the load generator -------------------------------------------------------------------------


def find_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit(
            "wrk is not installed: `apt-get install wrk` (Debian, Ubuntu; as root), `brew install wrk` (macOS), "
            "or build it from github.com/wg/wrk; then run this again"
        )
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server(
    command: list[str], env: dict[str, str], port: int, log: Path, timeout_s: float
) -> Iterator[tuple[str, int]]:
    """Start a server process, wait until it answers on `port`, yield its base URL and pid; stop it with SIGINT
    (uvicorn finishes the requests in flight) and make sure it is gone."""
    import httpx

    with log.open("ab") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{command[:3]} exited with {proc.returncode}; see {log}:\n{_tail(log)}")
            try:
                if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{command[:3]} did not answer within {timeout_s:.0f} s; see {log}")
            time.sleep(0.1)
        yield base_url, proc.pid
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def run_wrk(
    wrk: str, url: str, data: Path, run_tag: str, args: argparse.Namespace, seconds: float
) -> dict[str, Any]:
    out = data / f"acked-{run_tag}.txt"
    env = {
        **os.environ,
        "BENCH_DATA": str(data),
        "BENCH_OUT": str(out),
        "BENCH_SHOP": SHOP,
        "BENCH_RUN": run_tag,
    }
    command = [
        wrk,
        "--threads",
        str(args.threads),
        "--connections",
        str(args.connections),
        "--duration",
        f"{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--script",
        str(data / "bench.lua"),
        url,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=seconds + 60)
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH_JSON ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("BENCH_JSON "))
    result["acked_ids"] = [line for line in out.read_text().splitlines() if line]
    result["seconds"] = result["duration_us"] / 1e6
    result["rate"] = result["ok"] / result["seconds"]
    result["errors_total"] = sum(result["errors"].values())
    return result


def measure_bare(wrk: str, work: Path, data: Path, args: argparse.Namespace, tag: str) -> dict[str, Any]:
    port = _free_port()
    command = [
        *(sys.executable, __file__, "--role", "bare", "--port", str(port), "--log-level", args.log_level),
        *("--processes", str(args.processes)),
    ]
    with server(command, dict(os.environ), port, work / f"{tag}.log", args.start_timeout) as (base_url, pid):
        run_wrk(wrk, f"{base_url}/hooks/warmup", data, f"{tag}-warmup", args, args.warmup)
        cpu = tree_cpu_seconds(pid)
        result = run_wrk(wrk, f"{base_url}/hooks/bench", data, tag, args, args.seconds)
        result["server_cpu_s"] = tree_cpu_seconds(pid) - cpu
    del result["acked_ids"]
    return {"target": "bare ASGI", "tag": tag, **result}


def measure_hub(
    wrk: str, work: Path, data: Path, args: argparse.Namespace, backend: str, database_url: str | None
) -> dict[str, Any]:
    home = work / f"home-{backend.lower()}"
    home.mkdir()
    if database_url:
        backfill.recreate_postgres(database_url, create=True)
    connection_id = asyncio.run(_prepare(home, database_url))
    port = _free_port()
    env = {
        **os.environ,
        "CROSSDOCK_HOME": str(home),
        "CROSSDOCK_LOG_LEVEL": args.log_level.upper(),
        "CROSSDOCK_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    env.pop("CROSSDOCK_DATABASE_URL", None)
    if database_url:
        env["CROSSDOCK_DATABASE_URL"] = database_url
    crossdock = str(Path(sys.executable).with_name("crossdock"))
    command = [crossdock, "serve", "--no-workers", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--processes", str(args.processes)]
    tag = backend.lower()
    spy = shutil.which("py-spy") if args.profile else None
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    if args.profile and spy is None:
        # cProfile writes its stats when the server exits (on the SIGINT that stops it).
        command = [sys.executable, "-m", "cProfile", "-o", f"{args.profile}/serve-{tag}.prof", *command]
    with server(command, env, port, work / f"{tag}.log", args.start_timeout) as (base_url, pid):
        hook = f"{base_url}/hooks/{connection_id}"
        run_wrk(wrk, hook, data, f"{tag}-warmup", args, args.warmup)
        cpu = tree_cpu_seconds(pid)
        sampler = None
        if spy is not None:
            # py-spy samples the server's stacks through the measured run (collapsed stacks, one per line).
            out = f"{args.profile}/serve-{tag}.txt"
            duration = str(max(1, round(args.seconds)))
            record = [spy, "record", "--pid", str(pid), "--subprocesses", "--duration", duration]
            sampler = subprocess.Popen(
                [*record, "--format", "raw", "-o", out],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        result = run_wrk(wrk, hook, data, tag, args, args.seconds)
        result["server_cpu_s"] = tree_cpu_seconds(pid) - cpu
        if sampler is not None:
            sampler.wait(timeout=60)
    # The server has stopped: whatever it acknowledged has committed or is lost.
    stored = asyncio.run(_stored(home, database_url, connection_id))
    acked = set(result.pop("acked_ids"))
    lost = acked - stored["ids"]
    if result["ok"] != len(acked):
        # A 2xx answer without an inbox id is an acknowledgement the benchmark cannot check: count it lost.
        lost |= {f"unidentified-{i}" for i in range(result["ok"] - len(acked))}
    return {
        "target": f"crossdock serve, {backend}",
        "tag": tag,
        **result,
        "acked": result["ok"],
        "stored": len(acked & stored["ids"]),
        "inbox_rows": len(stored["ids"]),
        "inbox_duplicates": stored["duplicates"],
        "lost": len(lost),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    wrk = find_wrk()
    with tempfile.TemporaryDirectory(prefix="crossdock-ingest-") as tmp:
        work = Path(tmp)
        data = work / "data"
        data.mkdir()
        write_bodies(data, BODIES, args.seed)
        runs = [measure_bare(wrk, work, data, args, "bare-before")]
        runs.append(measure_hub(wrk, work, data, args, "SQLite", None))
        if args.database_url:
            try:
                runs.append(measure_hub(wrk, work, data, args, "PostgreSQL", args.database_url))
            finally:
                backfill.recreate_postgres(args.database_url, create=False)
        runs.append(measure_bare(wrk, work, data, args, "bare-after"))
    bare = [r for r in runs if r["target"] == "bare ASGI"]
    # The rate of the bare endpoint from the mean of its two runs' times (as bench/backfill.py does).
    bare_rate = sum(r["ok"] for r in bare) / sum(r["seconds"] for r in bare)
    for r in runs:
        r["ratio"] = r["rate"] / bare_rate
    return {
        "seconds": args.seconds,
        "connections": args.connections,
        "threads": args.threads,
        "processes": args.processes,
        "log_level": args.log_level,
        "bare_rate": bare_rate,
        "runs": runs,
    }


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=(
            f"Signed Shopify webhooks into crossdock serve against a bare ASGI endpoint: wrk, "
            f"{result['connections']} connections, {result['seconds']:g} s per target (same run), "
            f"{result['processes']} server process(es) each"
        ),
        caption=f"goals: hub / bare >= {GOAL_RATIO}, p99 <= {GOAL_P99_MS:g} ms, 0 lost",
    )
    columns = (
        "target",
        "2xx/s",
        "/ bare",
        "p50 ms",
        "p99 ms",
        "max ms",
        "2xx",
        "stored",
        "lost",
        "other",
        "CPU ms",
    )
    for name in columns:
        table.add_column(name, justify="left" if name == "target" else "right")
    for r in result["runs"]:
        hub = "lost" in r
        other = r["requests"] - r["ok"] + r["errors"]["connect"] + r["errors"]["timeout"]
        table.add_row(
            r["target"] + ("" if hub else f" ({r['tag'].removeprefix('bare-')})"),
            f"{r['rate']:,.0f}",
            f"{r['ratio']:.3f}",
            f"{r['p50_us'] / 1000:.1f}",
            f"{r['p99_us'] / 1000:.1f}",
            f"{r['max_us'] / 1000:.1f}",
            f"{r['ok']:,}",
            f"{r['stored']:,}" if hub else "",
            str(r["lost"]) if hub else "",
            str(other),
            f"{1000 * r['server_cpu_s'] / max(r['ok'], 1):.2f}",
        )
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(table)
    console.print(
        f"/ bare: against the bare endpoint's mean rate, {result['bare_rate']:,.0f}/s; other: answers that were "
        "not 2xx, and connect errors and timeouts; stored: acknowledged deliveries found in the inbox after "
        f"the server stopped; CPU ms: the server's CPU time (all its processes) per 2xx answer; uvicorn log level {result['log_level']}."
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per target")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before each measured run")
    parser.add_argument("--connections", type=int, default=8, help="connections wrk keeps open (concurrency)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--seed", type=int, default=1, help="seed of the sandbox orders used as bodies")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="server processes of each target (crossdock serve --processes N, and as many for the bare endpoint)",
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_POSTGRES,
        help="PostgreSQL database of the benchmark's own (name must contain 'bench'; dropped, created, dropped)",
    )
    parser.add_argument("--no-postgres", action="store_true", help="measure SQLite only")
    parser.add_argument(
        "--log-level", default="info", help="uvicorn's log level for both servers (crossdock's default: info)"
    )
    parser.add_argument(
        "--start-timeout", type=float, default=60.0, help="seconds a server may take to start"
    )
    parser.add_argument(
        "--profile",
        default=None,
        help="sample each crossdock serve with py-spy (if on PATH; else run it under cProfile), output here",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    parser.add_argument("--role", default="parent", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.role == "bare":
        serve_bare(args.port, args.log_level, args.processes)
        return
    if args.no_postgres:
        args.database_url = None
    result = measure(args)
    print_table(result)
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
