"""A small part of Shopify's GraphQL Admin API: the `inventoryItems` query, which is how an app finds an inventory
item by SKU (shopify.dev/docs/api/admin-graphql/2025-01/queries/inventoryItems, filter `sku:XYZ-12345`; the
REST variant listing that once served this is deprecated since 2024-04, shopify.dev admin-rest ProductVariant).

The request is `POST /admin/api/{version}/graphql.json` with JSON `{"query", "variables", "operationName"}`.
Answers follow the GraphQL response shape Shopify uses: `data`, `errors[{message, locations, path,
extensions{code}}]` with HTTP 200, and `extensions.cost` with `requestedQueryCost`, `actualQueryCost` and
`throttleStatus{maximumAvailable, currentlyAvailable, restoreRate}`; a query costing more than what is available
is refused with `{"errors":[{"message":"Throttled","extensions":{"code":"THROTTLED"}}]}`
(shopify.dev/docs/api/usage/limits, GraphQL Admin API; PROTOCOLS.md section 1).

What is parsed: one query operation (named or not) with variable definitions, fields, aliases, arguments of any
literal kind and variables. Fragments, directives and mutations are refused with an error saying so. Query costs
follow shopify.dev "Calculating query cost" roughly: 1 per object, a connection 2 plus one per node asked for.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Standard plan: 100 points restored per second, a bucket of 2000; at most 1000 points per query
# (shopify.dev/docs/api/usage/limits).
MAX_AVAILABLE = 2000.0
RESTORE_RATE = 100.0
MAX_QUERY_COST = 1000
MAX_PAGE = 250


class GraphQLError(Exception):
    def __init__(self, message: str, code: str | None = None, path: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.path = path

    def as_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message}
        if self.path:
            error["path"] = self.path
        if self.code:
            error["extensions"] = {"code": self.code}
        return error


# -- parsing ----------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r'(?P<ws>[\s,]+|#[^\n]*)|(?P<block>"""(?:[^"\\]|\\.|"(?!""))*""")|(?P<str>"(?:[^"\\\n]|\\.)*")'
    r"|(?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|(?P<name>[_A-Za-z][_0-9A-Za-z]*)|(?P<spread>\.\.\.)"
    r"|(?P<punct>[!$():=@\[\]{}|&])"
)


@dataclass
class Var:
    name: str


@dataclass
class Selection:
    name: str
    alias: str
    args: dict[str, Any]
    children: list[Selection] = field(default_factory=list)


@dataclass
class Operation:
    kind: str
    name: str | None
    variables: dict[str, tuple[str, Any]]  # name -> (type text, default)
    selections: list[Selection]


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None:
                raise GraphQLError(f"Parse error on {text[pos : pos + 10]!r} (unexpected character)")
            kind = match.lastgroup or ""
            if kind != "ws":
                self.tokens.append((kind, match.group()))
            pos = match.end()
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        token = self.peek()
        if token is None:
            raise GraphQLError("Parse error on end of query (unexpected end of input)")
        if (value is not None and token[1] != value) or (kind is not None and token[0] != kind):
            raise GraphQLError(f"Parse error on {token[1]!r} (expected {value or kind})")
        self.i += 1
        return token[1]

    def at(self, value: str) -> bool:
        token = self.peek()
        return token is not None and token[1] == value and token[0] in ("punct", "name", "spread")

    def document(self) -> list[Operation]:
        operations = []
        while self.peek() is not None:
            operations.append(self.operation())
        if not operations:
            raise GraphQLError("No query string was present")
        return operations

    def operation(self) -> Operation:
        if self.at("{"):
            return Operation("query", None, {}, self.selection_set())
        kind = self.take(kind="name")
        if kind == "fragment":
            raise GraphQLError("Fragments are not supported by the crossdock sandbox")
        if kind not in ("query", "mutation", "subscription"):
            raise GraphQLError(f"Parse error on {kind!r} (expected query)")
        name = self.take(kind="name") if self.peek() and self.peek()[0] == "name" else None  # type: ignore[index]
        variables: dict[str, tuple[str, Any]] = {}
        if self.at("("):
            self.take("(")
            while not self.at(")"):
                self.take("$")
                var = self.take(kind="name")
                self.take(":")
                type_text = self.type_ref()
                default = None
                if self.at("="):
                    self.take("=")
                    default = self.value(const=True)
                variables[var] = (type_text, default)
            self.take(")")
        if self.at("@"):
            raise GraphQLError("Directives are not supported by the crossdock sandbox")
        return Operation(kind, name, variables, self.selection_set())

    def type_ref(self) -> str:
        if self.at("["):
            self.take("[")
            inner = self.type_ref()
            self.take("]")
            text = f"[{inner}]"
        else:
            text = self.take(kind="name")
        if self.at("!"):
            self.take("!")
            text += "!"
        return text

    def selection_set(self) -> list[Selection]:
        self.take("{")
        selections = []
        while not self.at("}"):
            if self.at("..."):
                raise GraphQLError("Fragments are not supported by the crossdock sandbox")
            name = self.take(kind="name")
            alias = name
            if self.at(":"):
                self.take(":")
                name = self.take(kind="name")
            args: dict[str, Any] = {}
            if self.at("("):
                self.take("(")
                while not self.at(")"):
                    arg = self.take(kind="name")
                    self.take(":")
                    args[arg] = self.value()
                self.take(")")
            if self.at("@"):
                raise GraphQLError("Directives are not supported by the crossdock sandbox")
            children = self.selection_set() if self.at("{") else []
            selections.append(Selection(name, alias, args, children))
        self.take("}")
        if not selections:
            raise GraphQLError("Parse error on '}' (a selection set cannot be empty)")
        return selections

    def value(self, const: bool = False) -> Any:
        token = self.peek()
        if token is None:
            raise GraphQLError("Parse error on end of query (expected a value)")
        kind, text = token
        if text == "$" and kind == "punct":
            if const:
                raise GraphQLError("Parse error on '$' (a default value cannot use a variable)")
            self.take("$")
            return Var(self.take(kind="name"))
        if text == "[":
            self.take("[")
            items = []
            while not self.at("]"):
                items.append(self.value(const))
            self.take("]")
            return items
        if text == "{":
            self.take("{")
            obj = {}
            while not self.at("}"):
                key = self.take(kind="name")
                self.take(":")
                obj[key] = self.value(const)
            self.take("}")
            return obj
        self.i += 1
        if kind == "str":
            return json.loads(text)
        if kind == "block":
            return text[3:-3].replace('\\"""', '"""')
        if kind == "num":
            return float(text) if any(c in text for c in ".eE") else int(text)
        if kind == "name":
            return {"true": True, "false": False, "null": None}.get(text, text)
        raise GraphQLError(f"Parse error on {text!r} (expected a value)")


# -- the inventory search --------------------------------------------------------------------------------


@dataclass(frozen=True)
class InventoryItem:
    id: int
    sku: str
    variant_id: int
    title: str


_TERM = re.compile(r"""\s*(?:(OR|AND)\b|(\w+):("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s()]+)|(\S+))""")


def search_filter(text: str) -> Callable[[InventoryItem], bool]:
    """The `query` argument in Shopify's search syntax (shopify.dev/docs/api/usage/search-syntax): terms
    `field:value` (value bare, "double" or 'single' quoted, backslash escapes), joined by spaces or AND, and
    OR (AND binds tighter). Fields the sandbox knows: sku (whole value, case-insensitive) and id; a term on any
    other field or free text matches nothing."""
    groups: list[list[Callable[[InventoryItem], bool]]] = [[]]

    def nothing(_item: InventoryItem) -> bool:
        return False

    def sku_is(wanted: str) -> Callable[[InventoryItem], bool]:
        return lambda item: item.sku.casefold() == wanted.casefold()

    def id_is(wanted: str) -> Callable[[InventoryItem], bool]:
        return lambda item: str(item.id) == wanted.rsplit("/", 1)[-1]

    for match in _TERM.finditer(text):
        connective, name, raw, free = match.groups()
        if connective == "OR":
            groups.append([])
            continue
        if connective == "AND":
            continue
        if free is not None or name is None:
            groups[-1].append(nothing)
            continue
        value = raw
        if raw[:1] in ('"', "'") and raw[-1:] == raw[:1] and len(raw) >= 2:
            value = re.sub(r"\\(.)", r"\1", raw[1:-1])
        groups[-1].append(sku_is(value) if name == "sku" else id_is(value) if name == "id" else nothing)
    groups = [g for g in groups if g]
    if not groups:
        return lambda _item: True
    return lambda item: any(all(term(item) for term in group) for group in groups)


def _cursor(item_id: int) -> str:
    return base64.b64encode(json.dumps({"last_id": item_id}).encode()).decode()


def _after(cursor: Any) -> int:
    try:
        return int(json.loads(base64.b64decode(str(cursor)))["last_id"])
    except (ValueError, KeyError, TypeError):
        raise GraphQLError("Invalid cursor for current pagination sort.", "BAD_REQUEST") from None


class Executor:
    def __init__(self, items: list[InventoryItem], variables: dict[str, Any]) -> None:
        self.items = sorted(items, key=lambda i: i.id)
        self.variables = variables

    def arg(self, value: Any) -> Any:
        if isinstance(value, Var):
            return self.variables.get(value.name)
        if isinstance(value, list):
            return [self.arg(v) for v in value]
        if isinstance(value, dict):
            return {k: self.arg(v) for k, v in value.items()}
        return value

    def query_root(self, selections: list[Selection]) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for sel in selections:
            if sel.name == "__typename":
                data[sel.alias] = "QueryRoot"
            elif sel.name == "inventoryItems":
                data[sel.alias] = self.inventory_items(sel)
            else:
                raise _undefined(sel.name, "QueryRoot")
        return data

    def inventory_items(self, sel: Selection) -> dict[str, Any]:
        args = {k: self.arg(v) for k, v in sel.args.items()}
        unknown = set(args) - {"first", "after", "query", "reverse", "last", "before", "sortKey"}
        if unknown:
            name = sorted(unknown)[0]
            raise GraphQLError(
                f"Field 'inventoryItems' doesn't accept argument '{name}'", "argumentNotAccepted"
            )
        first = args.get("first")
        if args.get("last") is not None or args.get("before") is not None:
            raise GraphQLError("The crossdock sandbox pages forward only (first/after)")
        if first is None:
            raise GraphQLError("you must provide one of first or last", "BAD_REQUEST", ["inventoryItems"])
        if not isinstance(first, int) or not 0 <= first <= MAX_PAGE:
            raise GraphQLError(
                f"The 'first' argument must be between 0 and {MAX_PAGE}", "BAD_REQUEST", ["inventoryItems"]
            )
        matches = search_filter(str(args.get("query") or ""))
        found = [i for i in self.items if matches(i)]
        if args.get("reverse"):
            found.reverse()
        if args.get("after") is not None:
            anchor = _after(args["after"])
            ids = [i.id for i in found]
            found = found[ids.index(anchor) + 1 :] if anchor in ids else []
        page, more = found[:first], len(found) > first
        out: dict[str, Any] = {}
        for child in sel.children:
            if child.name == "edges":
                out[child.alias] = [self.edge(child, item) for item in page]
            elif child.name == "nodes":
                out[child.alias] = [self.item(child, item) for item in page]
            elif child.name == "pageInfo":
                out[child.alias] = self.page_info(child, page, more, args.get("after") is not None)
            elif child.name == "__typename":
                out[child.alias] = "InventoryItemConnection"
            else:
                raise _undefined(child.name, "InventoryItemConnection")
        return out

    def edge(self, sel: Selection, item: InventoryItem) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for child in sel.children:
            if child.name == "node":
                out[child.alias] = self.item(child, item)
            elif child.name == "cursor":
                out[child.alias] = _cursor(item.id)
            elif child.name == "__typename":
                out[child.alias] = "InventoryItemEdge"
            else:
                raise _undefined(child.name, "InventoryItemEdge")
        return out

    def page_info(
        self, sel: Selection, page: list[InventoryItem], more: bool, had_cursor: bool
    ) -> dict[str, Any]:
        values = {
            "hasNextPage": more,
            "hasPreviousPage": had_cursor,
            "startCursor": _cursor(page[0].id) if page else None,
            "endCursor": _cursor(page[-1].id) if page else None,
            "__typename": "PageInfo",
        }
        out: dict[str, Any] = {}
        for child in sel.children:
            if child.name not in values:
                raise _undefined(child.name, "PageInfo")
            out[child.alias] = values[child.name]
        return out

    def item(self, sel: Selection, item: InventoryItem) -> dict[str, Any]:
        values: dict[str, Any] = {
            "id": f"gid://shopify/InventoryItem/{item.id}",
            "legacyResourceId": str(item.id),
            "sku": item.sku,
            "tracked": True,
            "requiresShipping": True,
            "duplicateSkuCount": sum(1 for i in self.items if i.sku == item.sku) - 1,
            "__typename": "InventoryItem",
        }
        out: dict[str, Any] = {}
        for child in sel.children:
            if child.name == "variant":
                out[child.alias] = self.variant(child, item)
            elif child.name in values:
                out[child.alias] = values[child.name]
            else:
                raise _undefined(child.name, "InventoryItem")
        return out

    def variant(self, sel: Selection, item: InventoryItem) -> dict[str, Any]:
        values = {
            "id": f"gid://shopify/ProductVariant/{item.variant_id}",
            "legacyResourceId": str(item.variant_id),
            "sku": item.sku,
            "title": item.title,
            "__typename": "ProductVariant",
        }
        out: dict[str, Any] = {}
        for child in sel.children:
            if child.name not in values:
                raise _undefined(child.name, "ProductVariant")
            out[child.alias] = values[child.name]
        return out


def _undefined(name: str, type_name: str) -> GraphQLError:
    # graphql-ruby's wording, which Shopify answers with (code undefinedField).
    return GraphQLError(f"Field '{name}' doesn't exist on type '{type_name}'", "undefinedField")


def requested_cost(selections: list[Selection], variables: dict[str, Any]) -> int:
    """1 per object field, 2 per connection plus `first` times the cost of its nodes."""
    total = 0
    for sel in selections:
        if not sel.children:
            continue
        size = sel.args.get("first")
        if isinstance(size, Var):
            size = variables.get(size.name)
        inner = requested_cost(sel.children, variables)
        if isinstance(size, int):
            nodes = [c for c in sel.children if c.name in ("edges", "nodes")]
            per_node = max((requested_cost(c.children, variables) for c in nodes), default=0) or 1
            total += 2 + size * per_node
        elif sel.name in ("edges", "nodes"):
            total += inner
        else:
            total += 1 + inner
    return total


class PointBucket:
    """The GraphQL cost bucket: MAX_AVAILABLE points, RESTORE_RATE restored per second."""

    def __init__(self, scale: float = 1.0) -> None:
        self.maximum = MAX_AVAILABLE
        self.rate = RESTORE_RATE * scale
        self.available = MAX_AVAILABLE
        self._at = time.monotonic()

    def refill(self) -> None:
        now = time.monotonic()
        self.available = min(self.maximum, self.available + (now - self._at) * self.rate)
        self._at = now

    def status(self) -> dict[str, float]:
        return {
            "maximumAvailable": self.maximum,
            "currentlyAvailable": round(self.available, 1),
            "restoreRate": self.rate,
        }


def execute(payload: dict[str, Any], items: list[InventoryItem], bucket: PointBucket) -> dict[str, Any]:
    """Answer one GraphQL request body; always a GraphQL response object (the HTTP status is 200)."""
    query = payload.get("query")
    variables = payload.get("variables") or {}
    if not isinstance(variables, dict):
        return {"errors": [{"message": "Variables are invalid JSON."}]}
    if not isinstance(query, str) or not query.strip():
        return {"errors": [{"message": "No query string was present"}]}
    try:
        operations = _Parser(query).document()
        wanted = payload.get("operationName")
        chosen = [o for o in operations if wanted is None or o.name == wanted]
        if len(chosen) != 1:
            raise GraphQLError(
                "An operation name is required" if wanted is None else f'No operation named "{wanted}"'
            )
        operation = chosen[0]
        if operation.kind != "query":
            raise GraphQLError(f"The crossdock sandbox answers queries only, not {operation.kind}s")
        values: dict[str, Any] = {}
        for name, (type_text, default) in operation.variables.items():
            value = variables.get(name, default)
            if value is None and type_text.endswith("!"):
                raise GraphQLError(
                    f"Variable ${name} of type {type_text} was provided invalid value", "INVALID_VARIABLE"
                )
            values[name] = value
        cost = requested_cost(operation.selections, values)
        if cost > MAX_QUERY_COST:
            raise GraphQLError(
                f"Query cost is {cost}, which exceeds the single query max cost limit ({MAX_QUERY_COST}).",
                "MAX_COST_EXCEEDED",
            )
        bucket.refill()
        if cost > bucket.available:
            return {
                "errors": [
                    {
                        "message": "Throttled",
                        "extensions": {
                            "code": "THROTTLED",
                            "documentation": "https://shopify.dev/api/usage/rate-limits",
                        },
                    }
                ],
                "extensions": {
                    "cost": {
                        "requestedQueryCost": cost,
                        "actualQueryCost": None,
                        "throttleStatus": bucket.status(),
                    }
                },
            }
        data = Executor(items, values).query_root(operation.selections)
    except GraphQLError as exc:
        return {"errors": [exc.as_json()]}
    # Shopify refunds what a query asked for but did not use; the sandbox charges the requested cost.
    actual = cost
    bucket.available -= actual
    return {
        "data": data,
        "extensions": {
            "cost": {
                "requestedQueryCost": cost,
                "actualQueryCost": actual,
                "throttleStatus": bucket.status(),
            }
        },
    }
