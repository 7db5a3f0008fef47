"""The connectors' shared reading of a remote's JSON answer: an object, or a retryable error that names the
remote and the call."""

from __future__ import annotations

import httpx
import pytest

from crossdock.connectors.remote_json import json_object
from crossdock.engine.errors import RetryableError


def test_an_object_is_returned_as_is() -> None:
    assert json_object(httpx.Response(200, json={"orders": []}), "eBay", "getOrders") == {"orders": []}


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>502 Bad Gateway</html>"),
        httpx.Response(200, json=[{"id": 1}]),
        httpx.Response(200, content=b""),
    ],
)
def test_anything_else_is_retryable_and_names_the_remote_and_the_call(response: httpx.Response) -> None:
    with pytest.raises(RetryableError) as caught:
        json_object(response, "Shippo", "POST /transactions")
    assert caught.value.message == (
        "Shippo answered POST /transactions with a body that is not a JSON object; it will be tried again"
    )
