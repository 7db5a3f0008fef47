"""What a job's calls to an HTTPS remote cost with a connection of the job's own, against the process's kept-alive
connections (engine/http_pools.py), measured in the same run.

A "job" here is what a connector job does with its remote: a RemoteClient opened, two GETs, the client closed.
It runs against a real HTTPS server on 127.0.0.1 (uvicorn in a process of its own, with a certificate made for
the run and trusted by the client only), optionally behind a relay that delays what passes through it by half
of --rtt-ms each way and a new connection by --rtt-ms (the TCP handshake's round trip), to stand for the
distance to a remote. Jobs run one after the other, the two ways taking turns in rounds:

- own: each RemoteClient with a transport (connection pool) of its own, as before 42035ac: every job opens a TCP
  connection and makes a TLS handshake;
- shared: the RemoteClients send through the hub's RemotePools, so a job reuses the connection the last one
  left open.

For each way: wall time per job, this process's CPU per job (the client side, with the RemoteClient's records of
each call in a SQLite database), the server process's CPU per job, and the TCP connections the server accepted
per job. Ratios are shared / own.

    .venv/bin/python bench/remote_connections.py --jobs 200 --rtt-ms 0
    .venv/bin/python bench/remote_connections.py --jobs 100 --rtt-ms 40 --json
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import ipaddress
import json
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.engine.remote_support: an account and a connection to own the records

from bench.procs import cpu_seconds  # noqa: E402
from crossdock.config import Settings  # noqa: E402
from crossdock.engine.http import RemoteClient, Target  # noqa: E402
from crossdock.engine.http_pools import RemotePools  # noqa: E402
from crossdock.hub import Hub  # noqa: E402
from crossdock.logs import configure_logging  # noqa: E402
from crossdock.store.migrate import upgrade  # noqa: E402
from tests.engine.remote_support import new_owner  # noqa: E402

# The remote: answers GET /orders.json and counts the connections it accepted (GET /connections).
SERVER = """
import sys, uvicorn
seen = set()
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/connections":
        body = str(len(seen)).encode()
    else:
        seen.add(tuple(scope["client"]))
        body = b'{"orders": [{"id": 1, "name": "#1001", "financial_status": "paid"}]}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), ssl_certfile=sys.argv[2], ssl_keyfile=sys.argv[3],
            log_level="warning", access_log=False)
"""

# A relay standing for distance: each chunk is passed on half a round trip later, a new connection a round trip
# later (the TCP handshake), in order.
RELAY = """
import asyncio, sys
listen, upstream, half = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 2000.0
async def pipe(reader, writer):
    queue = asyncio.Queue()
    async def later():
        while True:
            due, chunk = await queue.get()
            await asyncio.sleep(max(0.0, due - asyncio.get_running_loop().time()))
            if chunk is None:
                writer.close()
                return
            writer.write(chunk)
    task = asyncio.create_task(later())
    while True:
        chunk = await reader.read(65536)
        queue.put_nowait((asyncio.get_running_loop().time() + half, chunk or None))
        if not chunk:
            break
    await task
async def relay(client_reader, client_writer):
    await asyncio.sleep(2 * half)
    server_reader, server_writer = await asyncio.open_connection("127.0.0.1", upstream)
    await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer),
                         return_exceptions=True)
async def main():
    server = await asyncio.start_server(relay, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()
asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA), made for the run."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crossdock bench remote")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


def wait_for_port(port: int, deadline_s: float = 15.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {deadline_s:g} s")


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Remote:
    url: str  # where the jobs call: the relay, or the server itself with no round trip to stand for
    counter_url: str  # the server itself
    server_pid: int
    trust: ssl.SSLContext


@contextmanager
def remote(rtt_ms: float, home: Path) -> Iterator[Remote]:
    """The HTTPS server and, for a round trip above 0, the relay in front of it; stopped on exit."""
    cert_file, key_file = certificate(home)
    server_port = free_port()
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", SERVER, str(server_port), str(cert_file), str(key_file)],
            stdout=subprocess.DEVNULL,
        )
    ]
    try:
        wait_for_port(server_port)
        port = server_port
        if rtt_ms > 0:
            port = free_port()
            processes.append(
                subprocess.Popen([sys.executable, "-c", RELAY, str(port), str(server_port), str(rtt_ms)])
            )
            wait_for_port(port)
        yield Remote(
            f"https://127.0.0.1:{port}",
            f"https://127.0.0.1:{server_port}",
            processes[0].pid,
            ssl.create_default_context(cafile=str(cert_file)),
        )
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)


async def measure(jobs: int, rounds: int, rtt_ms: float, there: Remote, home: Path) -> dict[str, Any]:
    trust = there.trust
    hub = Hub.from_settings(Settings(home=home, allow_private_urls=True))
    hub.remote_pools = RemotePools(
        make_transport=lambda limits: httpx.AsyncHTTPTransport(verify=trust, limits=limits)
    )
    await upgrade(hub.db)
    owner = await new_owner(hub)
    target = Target(owner.account_id, "shopify", owner.connection_id)
    counter = httpx.AsyncClient(verify=trust)

    async def connections() -> int:
        return int((await counter.get(f"{there.counter_url}/connections")).text)

    async def job(way: str) -> None:
        transport = httpx.AsyncHTTPTransport(verify=trust) if way == "own" else None
        async with RemoteClient(hub, target, base_url=there.url, transport=transport) as client:
            for _ in range(2):
                (await client.get("/orders.json", operation="orders")).json()

    totals = {way: {"wall": 0.0, "cpu": 0.0, "server": 0.0, "connections": 0} for way in ("own", "shared")}
    per_round = max(1, jobs // rounds)
    try:
        for way in ("own", "shared"):  # warm: imports, statement caches, the first connection
            for _ in range(5):
                await job(way)
        for _ in range(rounds):
            for way in ("own", "shared"):
                before_connections = await connections()
                wall, cpu, server_cpu = time.perf_counter(), own_cpu(), cpu_seconds(there.server_pid)
                for _ in range(per_round):
                    await job(way)
                total = totals[way]
                total["wall"] += time.perf_counter() - wall
                total["cpu"] += own_cpu() - cpu
                total["server"] += cpu_seconds(there.server_pid) - server_cpu
                total["connections"] += await connections() - before_connections
    finally:
        await counter.aclose()
        await hub.close()
    done = per_round * rounds
    result: dict[str, Any] = {"jobs": done, "rtt_ms": rtt_ms, "calls_per_job": 2}
    for way, total in totals.items():
        result[way] = {
            "wall_ms_per_job": 1000 * float(total["wall"]) / done,
            "client_cpu_ms_per_job": 1000 * float(total["cpu"]) / done,
            "server_cpu_ms_per_job": 1000 * float(total["server"]) / done,
            "connections_per_job": float(total["connections"]) / done,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=200, help="jobs for each way (two calls each)")
    parser.add_argument("--rounds", type=int, default=4, help="turns the two ways take")
    parser.add_argument("--rtt-ms", type=float, default=0.0, help="round trip to stand for, through a relay")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    configure_logging("warning", "console")  # not a line per call
    with (
        tempfile.TemporaryDirectory(prefix="crossdock-remote-connections-") as tmp,
        remote(args.rtt_ms, Path(tmp)) as there,
    ):
        result = asyncio.run(measure(args.jobs, args.rounds, args.rtt_ms, there, Path(tmp)))

    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"A job's two HTTPS calls, {result['jobs']} jobs each way, round trip {result['rtt_ms']:g} ms"
    )
    columns = (
        ("wall ms / job", "wall_ms_per_job"),
        ("client CPU ms / job", "client_cpu_ms_per_job"),
        ("server CPU ms / job", "server_cpu_ms_per_job"),
        ("connections / job", "connections_per_job"),
    )
    table.add_column("way")
    for title, _ in columns:
        table.add_column(title, justify="right")
    for way in ("own", "shared"):
        table.add_row(way, *(f"{result[way][key]:.2f}" for _, key in columns))
    table.add_row(
        "shared / own",
        *(
            f"{result['shared'][key] / result['own'][key]:.2f}" if result["own"][key] else "-"
            for _, key in columns
        ),
    )
    Console(width=None if sys.stdout.isatty() else 120).print(table)
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
