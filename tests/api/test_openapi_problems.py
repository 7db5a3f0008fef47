"""The OpenAPI document declares the problem+json answers the API gives (checked at length by
tests/security/test_openapi_fuzz.py)."""

import httpx

PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}


async def test_error_answers_are_declared_as_problem_json(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    get_order = spec["paths"]["/api/v1/orders/{order_id}"]["get"]["responses"]
    for status in ("401", "404", "422"):
        assert get_order[status]["content"] == PROBLEM, status
    create_order = spec["paths"]["/api/v1/orders"]["post"]["responses"]
    assert create_order["413"]["content"] == PROBLEM
    assert "404" not in create_order
    assert spec["paths"]["/api/v1/orders"]["get"]["responses"]["409"]["content"] == PROBLEM
    assert spec["paths"]["/api/v1/orders/{order_id}/cancel"]["post"]["responses"]["409"]["content"] == PROBLEM
    assert "401" not in spec["paths"]["/healthz"]["get"]["responses"]
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert {"type", "title", "status", "detail", "instance"} <= set(schemas["ProblemDetails"]["required"])


async def test_problem_bodies_match_the_declared_schema(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/orders/not-a-uuid")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert set(response.json()) <= {"type", "title", "status", "detail", "instance", "errors"}
