import uuid

import httpx
from sqlalchemy import text

from crossdock.api.app import create_app
from crossdock.config import Settings
from crossdock.hub import Hub


async def test_healthz_and_readyz(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json()["status"] == "ok"
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


async def test_readyz_is_503_when_migrations_are_missing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    hub = Hub.from_settings(Settings(home=tmp_path))
    async with hub.db.engine.begin() as conn:
        await conn.execute(text("SELECT 1"))
    transport = httpx.ASGITransport(app=create_app(hub))
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
        r = await client.get("/readyz")
    await hub.close()
    assert r.status_code == 503
    assert "crossdock migrate" in r.json()["migrations"]


async def test_metrics_count_requests(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    body = (await client.get("/metrics")).text
    assert 'crossdock_http_requests_total{method="GET",route="/healthz",status="200"}' in body


async def test_metrics_name_the_route_template_and_the_status_answered(client: httpx.AsyncClient) -> None:
    def count(body: str, labels: str) -> float:
        prefix = "crossdock_http_requests_total{" + labels + "} "
        return next(
            (float(line[len(prefix) :]) for line in body.splitlines() if line.startswith(prefix)), 0.0
        )

    hook = 'method="POST",route="/hooks/{connection_id}",status="404"'
    unmatched = 'method="GET",route="unmatched",status="404"'
    before = (await client.get("/metrics")).text
    for _ in range(2):
        assert (await client.post(f"/hooks/{uuid.uuid4()}", content=b"{}")).status_code == 404
    assert (await client.get("/no/such/page")).status_code == 404
    after = (await client.get("/metrics")).text
    assert count(after, hook) - count(before, hook) == 2
    assert count(after, unmatched) - count(before, unmatched) == 1
    assert 'crossdock_http_request_seconds_count{method="POST",route="/hooks/{connection_id}"}' in after


async def test_openapi_documents_the_api(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "/api/v1/orders" in spec["paths"]
    assert "/api/v1/orders/{order_id}/timeline" in spec["paths"]
    assert (await client.get("/docs")).status_code == 200
