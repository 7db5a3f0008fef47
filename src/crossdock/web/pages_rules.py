"""The shipping rules editor: the account's shipping policy in words, a form per rule (add, edit, remove, move),
the fallback and the policy's settings, and a "try it" form that asks what the rules would choose for a
shipment and why.

Every edit is made on the stored policy document and goes through the same model (`ShippingPolicy`) and the
same save (`save_policy`, with the version the page was read at) as `PUT /api/v1/shipping/policy`; a value the
model refuses is named on the form it came from, and nothing is saved. "Try it" is `POST /api/v1/rates/quote`'s
own work (`quote_cart`)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import pycountry
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from crossdock import model as m
from crossdock.api.problems import Problem
from crossdock.api.routes_rates import Quoted, QuoteIn, quote_cart
from crossdock.connectors.base import Role
from crossdock.connectors.registry import get_spec
from crossdock.flows.policy import ShippingPolicy, load_policy, save_policy
from crossdock.flows.rules import ShippingRule, Strategy
from crossdock.model.units import LengthUnit, WeightUnit
from crossdock.store import tables as t
from crossdock.store.repo import Conflict
from crossdock.web.context import Panel
from crossdock.web.deps import FormDep, PanelDep, PanelError
from crossdock.web.render import render

router = APIRouter(include_in_schema=False)

WEIGHT_UNITS = [u.value for u in WeightUnit]
LENGTH_UNITS = [u.value for u in LengthUnit]
STRATEGIES = (
    ("cheapest", "the cheapest service"),
    ("fastest", "the fastest service"),
    ("fixed", "a fixed service"),
)
TRY_SKU = "try-it"

# The policy's field names as the forms label them, for error messages.
RULE_LABELS = {
    "name": "name",
    "countries": "destination countries",
    "min_weight": "weight from",
    "max_weight": "weight up to",
    "min_value": "order value from",
    "max_value": "order value up to",
    "sku_tags": "SKU tags",
    "strategy": "choose",
    "connection_id": "connection",
    "service": "service",
}
PACKING_LABELS = {
    "packaging_weight": "packaging weight",
    "default_box": "default box",
    "default_item_weight": "default item weight",
    "max_weight": "most a parcel may weigh",
    "length": "length",
    "width": "width",
    "height": "height",
}
SETTINGS_LABELS = {
    "auto_ship": "buy labels automatically",
    "auto_ship_max_age_days": "only for orders placed within (days)",
}
QUOTE_LABELS = {
    "country": "destination country",
    "weight": "weight",
    "price": "order value",
    "amount": "order value",
    "currency": "currency",
    "sku": "SKUs",
}


# Reading the policy for people -------------------------------------------------------------------------------
def _country_name(code: str) -> str:
    found = pycountry.countries.get(alpha_2=code)
    return f"{found.name} ({code})" if found is not None else code


def _band(low: Any, high: Any, text: Callable[[Any], str]) -> str | None:
    if low is not None and high is not None:
        return f"from {text(low)} up to (not including) {text(high)}"
    if low is not None:
        return f"{text(low)} or more"
    if high is not None:
        return f"under {text(high)}"
    return None


def _money(money: m.Money) -> str:
    return f"{money.amount} {money.currency}"


def _choice(rule: ShippingRule) -> str:
    if rule.strategy is Strategy.FIXED:
        return f"the fixed service {rule.service}"
    if rule.strategy is Strategy.FASTEST:
        return "the fastest service (fewest days in transit, then the lower price)"
    return "the cheapest service"


def _source(rule: ShippingRule, names: dict[uuid.UUID, str]) -> str:
    if rule.connection_id is None:
        return "any of your shipping connections"
    return names.get(rule.connection_id, f"connection {rule.connection_id} (no longer there)")


def rule_in_words(rule: ShippingRule, names: dict[uuid.UUID, str]) -> dict[str, Any]:
    match = rule.match
    return {
        "name": rule.name,
        "destination": ", ".join(_country_name(c) for c in match.countries) or "anywhere",
        "weight": _band(match.min_weight, match.max_weight, str) or "any weight",
        "value": _band(match.min_value, match.max_value, _money) or "any order value",
        "tags": " or ".join(match.sku_tags) if match.sku_tags else None,
        "choice": _choice(rule),
        "source": _source(rule, names),
    }


def _weight_fields(prefix: str, weight: m.Weight | None) -> dict[str, str]:
    return {
        f"{prefix}_value": "" if weight is None else str(weight.value),
        f"{prefix}_unit": "kg" if weight is None else weight.unit.value,
    }


def rule_fields(rule: ShippingRule | None) -> dict[str, str]:
    """The form's values for a rule (None: an empty new rule)."""
    rule = rule or ShippingRule()
    match = rule.match
    money = match.min_value or match.max_value
    return {
        "name": rule.name or "",
        "countries": ", ".join(match.countries),
        **_weight_fields("min_weight", match.min_weight),
        **_weight_fields("max_weight", match.max_weight),
        "min_value": "" if match.min_value is None else str(match.min_value.amount),
        "max_value": "" if match.max_value is None else str(match.max_value.amount),
        "currency": money.currency if money is not None else "",
        "sku_tags": ", ".join(match.sku_tags),
        "strategy": rule.strategy.value,
        "connection_id": "" if rule.connection_id is None else str(rule.connection_id),
        "service": rule.service or "",
    }


def settings_fields(policy: ShippingPolicy) -> dict[str, str]:
    packing = policy.packing
    box = packing.default_box
    return {
        "auto_ship": "on" if policy.auto_ship else "",
        "auto_ship_max_age_days": str(policy.auto_ship_max_age_days),
        **_weight_fields("packaging_weight", packing.packaging_weight),
        **_weight_fields("default_item_weight", packing.default_item_weight),
        **_weight_fields("max_weight", packing.max_weight),
        "box_length": "" if box is None else str(box.length.value),
        "box_width": "" if box is None else str(box.width.value),
        "box_height": "" if box is None else str(box.height.value),
        "box_unit": "cm" if box is None else box.length.unit.value,
    }


# Reading the forms -----------------------------------------------------------------------------------------
def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _list(text: str) -> list[str]:
    return [part for part in re.split(r"[,\s]+", text) if part]


def _weight_doc(form: FormData, prefix: str) -> dict[str, str] | None:
    value = _text(form, f"{prefix}_value")
    return {"value": value, "unit": _text(form, f"{prefix}_unit") or "g"} if value else None


def entered_rule(form: FormData) -> dict[str, str]:
    fields = rule_fields(None)
    return {name: _text(form, name) for name in fields}


def rule_document(form: FormData, *, with_match: bool = True) -> dict[str, Any]:
    """A rule as the policy document holds it, from its form; the model checks it afterwards."""
    document: dict[str, Any] = {"strategy": _text(form, "strategy") or "cheapest"}
    if name := _text(form, "name"):
        document["name"] = name
    if connection := _text(form, "connection_id"):
        document["connection_id"] = connection
    # The service field is read only for a fixed service, as its label says; the other strategies pick one.
    if document["strategy"] == Strategy.FIXED.value:
        document["service"] = _text(form, "service") or None
    if not with_match:
        return document
    match: dict[str, Any] = {}
    if countries := _list(_text(form, "countries")):
        match["countries"] = countries
    for bound in ("min_weight", "max_weight"):
        if (weight := _weight_doc(form, bound)) is not None:
            match[bound] = weight
    currency = _text(form, "currency").upper()
    for bound in ("min_value", "max_value"):
        if amount := _text(form, bound):
            match[bound] = {"amount": amount, "currency": currency}
    if tags := _list(_text(form, "sku_tags")):
        match["sku_tags"] = tags
    document["match"] = match
    return document


def _numbered_place(where: Sequence[Any]) -> tuple[str, Sequence[Any]]:
    if len(where) >= 2 and where[0] == "rules" and isinstance(where[1], int):
        return f"rule {where[1] + 1}", where[2:]
    if where and where[0] == "fallback":
        return "fallback", where[1:]
    if where and where[0] == "packing":
        return "packing", where[1:]
    return "settings", where


def _labelled(message: str, labels: dict[str, str]) -> str:
    """The model's field names in a message ("max_weight must be more than min_weight") as the form labels them."""
    for name, label in labels.items():
        if "_" in name:
            message = re.sub(rf"\b{name}\b", f'"{label}"', message)
    return message


def policy_problem(exc: ValidationError) -> str:
    """The model's first objection in the form's words: 'rule 2: "weight up to" must be more than ...'."""
    error = exc.errors()[0]
    place, rest = _numbered_place(error["loc"])
    labels = PACKING_LABELS if place == "packing" else RULE_LABELS | SETTINGS_LABELS
    field = " ".join(labels[str(part)] for part in rest if str(part) in labels)
    message = _labelled(str(error["msg"]).removeprefix("Value error, "), labels)
    where = ", ".join(part for part in ("" if place == "settings" else place, field) if part)
    return f"{where}: {message}" if where else message


# The page ----------------------------------------------------------------------------------------------------
async def _shipping_connections(panel: Panel) -> list[t.Connection]:
    rows = await panel.tenant.list_connections()
    shipping = []
    for row in rows:
        try:
            if get_spec(row.connector).role is Role.SHIPPING:
                shipping.append(row)
        except KeyError:
            continue
    return shipping


async def _page_context(panel: Panel, entered: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """Everything the page shows from the database (read before "try it" ends the request's transaction)."""
    policy, version = await load_policy(panel.db, panel.account.id)
    connections = await _shipping_connections(panel)
    names = {c.id: c.name for c in connections}
    entered = entered or {}
    rules = [
        {
            "number": number,
            "words": rule_in_words(rule, names),
            "form": entered.get(f"rule-{number}") or rule_fields(rule),
        }
        for number, rule in enumerate(policy.rules, start=1)
    ]
    fallback = None
    if policy.fallback is not None:
        fallback = {"words": rule_in_words(policy.fallback, names), "form": rule_fields(policy.fallback)}
    return {
        "policy": policy,
        "version": version,
        "rules": rules,
        "fallback": fallback,
        "fallback_form": entered.get("fallback") or (fallback["form"] if fallback else rule_fields(None)),
        "new_form": entered.get("new") or rule_fields(None),
        "settings": entered.get("settings") or settings_fields(policy),
        "connections": connections,
    }


EMPTY_TRY = {"country": "", "weight": "", "weight_unit": "kg", "value": "", "currency": "", "skus": ""}


def _render_page(
    request: Request,
    panel: Panel,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    tried: dict[str, Any] | None = None,
) -> Response:
    return render(
        request,
        "rules/rules.html",
        panel=panel,
        active="rules",
        status_code=status_code,
        strategies=STRATEGIES,
        weight_units=WEIGHT_UNITS,
        length_units=LENGTH_UNITS,
        errors=errors or {},
        tried=tried or {"form": EMPTY_TRY},
        **context,
    )


async def _page(
    request: Request,
    panel: Panel,
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    entered: dict[str, dict[str, str]] | None = None,
) -> Response:
    context = await _page_context(panel, entered)
    return _render_page(request, panel, context, status_code=status_code, errors=errors)


@router.get("/rules")
async def rules_page(request: Request, panel: PanelDep) -> Response:
    return await _page(request, panel)


def _version(form: FormData) -> int:
    try:
        return int(_text(form, "version"))
    except ValueError:
        raise PanelError(
            400,
            "Form refused",
            "The form did not say which version of the rules it was made on. Reload the page.",
        ) from None


async def _save(
    request: Request,
    panel: Panel,
    form: FormData,
    change: Callable[[dict[str, Any]], None],
    *,
    where: str,
    entered: dict[str, str] | None,
    done: str,
) -> Response:
    """Apply `change` to the stored policy document, check it with the API's model and save it with the version
    the form was read at; or show what is wrong on the form `where`, saving nothing."""
    version = _version(form)
    policy, _current = await load_policy(panel.db, panel.account.id)
    document = policy.model_dump(mode="json")
    change(document)
    kept = {where: entered} if entered is not None else {}
    try:
        edited = ShippingPolicy.model_validate(document)
        await save_policy(panel.db, panel.account.id, edited, version=version)
    except ValidationError as exc:
        return await _page(request, panel, status_code=422, errors={where: policy_problem(exc)}, entered=kept)
    except Conflict as exc:
        return await _page(
            request, panel, status_code=409, errors={where: f"Not saved: {exc}."}, entered=kept
        )
    return RedirectResponse(f"/rules?notice={quote(done)}#{where}", status_code=303)


def _rule_index(document: dict[str, Any], number: int) -> int:
    if not 1 <= number <= len(document["rules"]):
        raise PanelError(
            404,
            "No such rule",
            f"There is no rule {number} (someone may have removed it). Reload Shipping rules and try again.",
        )
    return number - 1


@router.post("/rules/settings")
async def save_settings(request: Request, panel: PanelDep, form: FormDep) -> Response:
    entered = {name: _text(form, name) for name in settings_fields(ShippingPolicy())}

    def change(document: dict[str, Any]) -> None:
        document["auto_ship"] = bool(_text(form, "auto_ship"))
        document["auto_ship_max_age_days"] = _text(form, "auto_ship_max_age_days")
        packing = dict(document["packing"])
        packing["packaging_weight"] = _weight_doc(form, "packaging_weight") or {"value": "0", "unit": "g"}
        packing["default_item_weight"] = _weight_doc(form, "default_item_weight")
        packing["max_weight"] = _weight_doc(form, "max_weight")
        sides = {side: _text(form, f"box_{side}") for side in ("length", "width", "height")}
        unit = _text(form, "box_unit") or "cm"
        packing["default_box"] = (
            {side: {"value": value, "unit": unit} for side, value in sides.items()}
            if any(sides.values())
            else None
        )
        document["packing"] = packing

    return await _save(
        request, panel, form, change, where="settings", entered=entered, done="Shipping settings saved."
    )


@router.post("/rules/new")
async def add_rule(request: Request, panel: PanelDep, form: FormDep) -> Response:
    def change(document: dict[str, Any]) -> None:
        document["rules"] = [*document["rules"], rule_document(form)]

    return await _save(
        request, panel, form, change, where="new", entered=entered_rule(form), done="Rule added at the end."
    )


@router.post("/rules/rule/{number}")
async def edit_rule(request: Request, number: int, panel: PanelDep, form: FormDep) -> Response:
    def change(document: dict[str, Any]) -> None:
        document["rules"][_rule_index(document, number)] = rule_document(form)

    return await _save(
        request,
        panel,
        form,
        change,
        where=f"rule-{number}",
        entered=entered_rule(form),
        done=f"Rule {number} saved.",
    )


@router.post("/rules/rule/{number}/remove")
async def remove_rule(request: Request, number: int, panel: PanelDep, form: FormDep) -> Response:
    def change(document: dict[str, Any]) -> None:
        del document["rules"][_rule_index(document, number)]

    return await _save(
        request, panel, form, change, where="rules", entered=None, done=f"Rule {number} removed."
    )


@router.post("/rules/rule/{number}/move")
async def move_rule(request: Request, number: int, panel: PanelDep, form: FormDep) -> Response:
    up = _text(form, "direction") == "up"
    target = number - 1 if up else number + 1

    def change(document: dict[str, Any]) -> None:
        rules = document["rules"]
        here = _rule_index(document, number)
        there = _rule_index(document, target)
        rules[here], rules[there] = rules[there], rules[here]

    return await _save(
        request,
        panel,
        form,
        change,
        where="rules",
        entered=None,
        done=f"Rule {number} is now rule {target}.",
    )


@router.post("/rules/fallback")
async def set_fallback(request: Request, panel: PanelDep, form: FormDep) -> Response:
    def change(document: dict[str, Any]) -> None:
        document["fallback"] = rule_document(form, with_match=False)

    return await _save(
        request, panel, form, change, where="fallback", entered=entered_rule(form), done="Fallback saved."
    )


@router.post("/rules/fallback/remove")
async def remove_fallback(request: Request, panel: PanelDep, form: FormDep) -> Response:
    def change(document: dict[str, Any]) -> None:
        document["fallback"] = None

    return await _save(request, panel, form, change, where="fallback", entered=None, done="Fallback removed.")


# Try it ------------------------------------------------------------------------------------------------------
def _quote_items(
    skus: list[str], weight: dict[str, str] | None, price: dict[str, str]
) -> list[dict[str, Any]]:
    """The shipment as a cart: the weight and value on the first item; further SKUs add their tags (and, when no
    weight was given, the catalog's weight), nothing more."""
    items: list[dict[str, Any]] = []
    for position, sku in enumerate(skus or [TRY_SKU]):
        item: dict[str, Any] = {"sku": sku, "quantity": 1}
        if position == 0:
            item["price"] = price
            if weight is not None:
                item["weight"] = weight
        else:
            item["price"] = {"amount": "0", "currency": price["currency"]}
            if weight is not None:
                item["weight"] = {"value": "0", "unit": weight["unit"]}
        items.append(item)
    return items


def quote_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    names = [str(part) for part in error["loc"]]
    label = next((QUOTE_LABELS[n] for n in reversed(names) if n in QUOTE_LABELS), "")
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{label}: {message}" if label else message


def _left_out_names(quoted: Quoted, names: dict[uuid.UUID, str]) -> list[dict[str, str]]:
    return [
        {"name": names.get(item.connection_id, str(item.connection_id)), "reason": item.reason}
        for item in quoted.answer.left_out
    ]


@router.post("/rules/try")
async def try_rules(request: Request, panel: PanelDep, form: FormDep) -> Response:
    entered = {name: _text(form, name) for name in EMPTY_TRY}
    entered["currency"] = entered["currency"].upper()
    skus = _list(entered["skus"])
    tried: dict[str, Any] = {"form": entered}
    context = await _page_context(panel)
    # Left-out connections may be any of the account's (a rule can name a paused one).
    names = {c.id: c.name for c in await panel.tenant.list_connections()}
    weight = (
        {"value": entered["weight"], "unit": entered["weight_unit"] or "kg"} if entered["weight"] else None
    )
    if weight is None and not skus:
        tried["error"] = (
            "weight: give the shipment's weight, or SKUs whose products have a weight in the catalog"
        )
        return _render_page(request, panel, context, status_code=422, tried=tried)
    price = {"amount": entered["value"], "currency": entered["currency"]}
    try:
        body = QuoteIn.model_validate(
            {"destination": {"country": entered["country"]}, "items": _quote_items(skus, weight, price)}
        )
        # The quote ends the request's transaction before it asks for rates (nothing is written here).
        quoted = await quote_cart(panel.hub, panel.tenant, body)
    except ValidationError as exc:
        tried["error"] = quote_problem(exc)
        return _render_page(request, panel, context, status_code=422, tried=tried)
    except Problem as exc:
        tried["error"] = exc.detail.replace(f"item {TRY_SKU} ", "the shipment ")
        return _render_page(request, panel, context, status_code=422, tried=tried)
    tried["answer"] = quoted.answer
    tried["skipped"] = quoted.skipped
    tried["left_out"] = _left_out_names(quoted, names)
    tried["names"] = {str(k): v for k, v in names.items()}
    return _render_page(request, panel, context, tried=tried)
