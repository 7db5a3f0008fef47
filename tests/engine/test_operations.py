"""Operations: /api/v1/jobs (filters, cursor pages, retry, cancel), /api/v1/sync-runs, queue metrics, and the
worker that `crossdock serve` runs inside the app."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import update

from crossdock.api.app import create_app
from crossdock.engine.jobs import enqueue
from crossdock.engine.syncruns import PageCounts, commit_page, finish_run, start_run
from crossdock.hub import Hub
from crossdock.store import tables as t
from crossdock.store.types import utcnow
from tests.engine.support import eventually, fast, status_is
from tests.support import Tenant


async def _jobs(hub: Hub, owner: Tenant, kinds: list[str], status: str = "queued") -> list[uuid.UUID]:
    ids = []
    async with hub.db.transaction() as session:
        for kind in kinds:
            job_id = await enqueue(
                session, account_id=uuid.UUID(owner.id), kind=kind, payload={"n": len(ids)}
            )
            assert job_id is not None
            ids.append(job_id)
        await session.execute(update(t.Job).where(t.Job.id.in_(ids)).values(status=status))
    return ids


async def test_jobs_are_listed_newest_first_by_status_and_kind_in_cursor_pages(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    await _jobs(hub, acme, ["sync.orders"] * 3 + ["label.buy"] * 2)
    dead = await _jobs(hub, acme, ["label.buy"], status="dead")
    seen: list[str] = []
    url = "/api/v1/jobs?limit=2"
    while url:
        page = (await client.get(url, headers=acme.headers)).json()
        seen += [j["id"] for j in page["items"]]
        url = f"/api/v1/jobs?limit=2&cursor={page['next_cursor']}" if page["next_cursor"] else ""
    assert len(seen) == len(set(seen)) == 6
    assert seen[0] == str(dead[0])
    labels = (await client.get("/api/v1/jobs?kind=label.buy", headers=acme.headers)).json()["items"]
    assert len(labels) == 3
    only_dead = (await client.get("/api/v1/jobs?status=dead", headers=acme.headers)).json()["items"]
    assert [j["id"] for j in only_dead] == [str(dead[0])]
    bad = await client.get("/api/v1/jobs?status=lost", headers=acme.headers)
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    assert (await client.get("/api/v1/jobs?cursor=garbage", headers=acme.headers)).status_code == 409


async def test_retry_and_cancel_through_the_api(client: httpx.AsyncClient, hub: Hub, acme: Tenant) -> None:
    [dead] = await _jobs(hub, acme, ["label.buy"], status="dead")
    [waiting] = await _jobs(hub, acme, ["label.buy"])
    [done] = await _jobs(hub, acme, ["label.buy"], status="succeeded")

    retried = await client.post(f"/api/v1/jobs/{dead}/retry", headers=acme.headers)
    assert retried.status_code == 200 and retried.json()["status"] == "queued"
    cancelled = await client.post(f"/api/v1/jobs/{waiting}/cancel", headers=acme.headers)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["last_error"] == "cancelled by an operator"

    refused = await client.post(f"/api/v1/jobs/{done}/retry", headers=acme.headers)
    assert refused.status_code == 409
    assert "only dead, cancelled or failed jobs can be retried" in refused.json()["detail"]
    assert (await client.post(f"/api/v1/jobs/{done}/cancel", headers=acme.headers)).status_code == 409

    [running] = await _jobs(hub, acme, ["label.buy"], status="running")
    asked = await client.post(f"/api/v1/jobs/{running}/cancel", headers=acme.headers)
    assert (
        asked.status_code == 200 and asked.json()["status"] == "running" and asked.json()["cancel_requested"]
    )


async def test_sync_runs_show_their_counts_and_cursor(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    created = await client.post(
        "/api/v1/connections",
        json={"connector": "shippo", "name": "Shippo", "secrets": {"api_token": "shippo_test_x"}},
        headers=acme.headers,
    )
    connection_id = uuid.UUID(created.json()["id"])
    watermark = utcnow().replace(microsecond=0)
    async with hub.db.transaction() as session:
        run = await start_run(
            session, account_id=uuid.UUID(acme.id), connection_id=connection_id, stream="orders"
        )
        await commit_page(session, run, watermark, PageCounts(read=50, created=40, updated=8, skipped=2))
        await finish_run(session, run)
    runs = (await client.get(f"/api/v1/sync-runs?connection_id={connection_id}", headers=acme.headers)).json()
    [item] = runs["items"]
    assert item["status"] == "succeeded" and item["pages"] == 1
    assert (item["read"], item["created"], item["updated"], item["skipped"], item["invalid"]) == (
        50,
        40,
        8,
        2,
        0,
    )
    one = (await client.get(f"/api/v1/sync-runs/{item['id']}", headers=acme.headers)).json()
    assert one["cursor_to"] is not None and one == item
    assert (await client.get("/api/v1/sync-runs?status=failed", headers=acme.headers)).json()["items"] == []


async def test_metrics_report_queue_depth_by_status(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    await _jobs(hub, acme, ["a", "b"])
    await _jobs(hub, acme, ["c"], status="dead")
    text = (await client.get("/metrics")).text
    assert 'crossdock_jobs{status="queued"} 2.0' in text
    assert 'crossdock_jobs{status="dead"} 1.0' in text
    assert 'crossdock_jobs{status="running"} 0.0' in text


async def test_the_served_app_runs_a_worker_that_stops_with_it(hub: Hub, acme: Tenant) -> None:
    fast(hub)
    import tests.engine.jobkinds  # noqa: F401  (registers test.ok)

    app = create_app(hub, run_workers=True)
    async with app.router.lifespan_context(app):
        [job_id] = await _jobs(hub, acme, ["test.ok"])
        await eventually(lambda: status_is(hub, job_id, "succeeded"))
