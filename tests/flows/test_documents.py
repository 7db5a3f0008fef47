"""Packing slips: a real PDF that pypdf opens, whose text holds the order, its lines and both addresses in their
own scripts, that runs onto more pages when the lines do, and that names the characters it cannot show."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime

import pypdf

from crossdock import model as m
from crossdock.flows.documents import REPLACEMENT, file_safe, order_number, packing_slip

SHIP_TO = m.Address(
    first_name="花子",
    last_name="山田",
    line1="神南1-2-3",
    line2="渋谷区",
    city="東京都",
    postal_code="150-0041",
    country="JP",
)
SHIP_FROM = m.Address(
    first_name="Иван",
    last_name="Петров",
    company="Торговый дом Ромашка",
    line1="ул. Тверская, 7",
    city="Москва",
    postal_code="125009",
    country="RU",
)


def order(lines: list[m.OrderLine], **overrides: object) -> m.Order:
    fields: dict[str, object] = {
        "id": uuid.uuid4(),
        "status": m.OrderStatus.PAID,
        "currency": "JPY",
        "shipping_address": SHIP_TO,
        "lines": lines,
        "external_id": "450789469",
        "external_number": "#1001",
        "placed_at": datetime(2025, 3, 1, 9, 30, tzinfo=UTC),
    }
    fields.update(overrides)
    return m.Order.model_validate(fields)


def pages(pdf: bytes) -> list[str]:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return [page.extract_text() for page in reader.pages]


LINES = [
    m.OrderLine(sku="MUG-1", title="Mug", quantity=2),
    m.OrderLine(sku="TEA-200", title="抹茶 200 g", quantity=3),
    m.OrderLine(sku="SPOON-9", title="Ложка", quantity=1),
]


def test_a_slip_shows_the_order_its_lines_and_both_addresses() -> None:
    text = pages(packing_slip(order(LINES), ship_from=SHIP_FROM, channel="Shopify"))

    assert len(text) == 1
    slip = text[0]
    assert "Order #1001" in slip and "2025-03-01" in slip
    assert "Shopify order 450789469" in slip
    rows = slip.splitlines()
    for position, line in enumerate(LINES, start=1):
        assert f"{position} {line.sku} {line.title} {line.quantity}" in rows
    assert "Items to ship: 6" in slip
    # The ship-to address in Japanese, the sender in Cyrillic.
    assert "花子 山田" in slip and "150-0041 東京都" in slip and "Japan" in slip
    assert "Иван Петров" in slip and "Торговый дом Ромашка" in slip and "125009 Москва" in slip
    assert REPLACEMENT not in slip


def test_greek_and_arabic_names_are_drawn_as_text() -> None:
    ship_to = SHIP_TO.model_copy(update={"first_name": "Γιώργος", "last_name": "محمد"})

    slip = pages(packing_slip(order(LINES, shipping_address=ship_to), ship_from=None))[0]

    assert "Γιώργος" in slip and "محمد" in slip
    assert REPLACEMENT not in slip


def test_lines_that_do_not_ship_are_marked_and_left_out_of_the_count() -> None:
    lines = [*LINES, m.OrderLine(sku="GIFT-25", title="Gift card", quantity=1, requires_shipping=False)]

    slip = pages(packing_slip(order(lines), ship_from=SHIP_FROM))[0]

    assert "4 GIFT-25 Gift card (does not ship) 1" in slip.splitlines()
    assert "Items to ship: 6" in slip and "Items that do not ship: 1" in slip


def test_sixty_lines_run_onto_more_pages_with_the_headings_again() -> None:
    lines = [m.OrderLine(sku=f"SKU-{i:02d}", title=f"Item {i}", quantity=i % 4 + 1) for i in range(60)]

    text = pages(packing_slip(order(lines), ship_from=SHIP_FROM))

    assert len(text) > 1
    rows = "\n".join(text).splitlines()
    for position, line in enumerate(lines, start=1):
        assert f"{position} {line.sku} {line.title} {line.quantity}" in rows
    assert all("# SKU Item Qty" in page for page in text)
    assert [f"Order #1001 · page {n}" in page for n, page in enumerate(text, start=1)] == [True] * len(text)
    assert f"Items to ship: {sum(line.quantity for line in lines)}" in text[-1]


def test_a_character_no_font_has_is_replaced_and_named() -> None:
    lines = [
        m.OrderLine(sku="GLYPH-1", title="Scarab \U00013000 charm", quantity=1),
        m.OrderLine(sku="GLYPH-2", title="Smile \U0001f600", quantity=1),
    ]

    pdf = packing_slip(order(lines), ship_from=None)

    slip = pages(pdf)[0]
    assert f"Scarab {REPLACEMENT} charm" in slip and f"Smile {REPLACEMENT}" in slip
    assert "U+13000 EGYPTIAN HIEROGLYPH A001, U+1F600 GRINNING FACE" in slip
    # The replacement character is drawn, not left blank: Source Sans has none, so a Kurinto font is embedded.
    page = pypdf.PdfReader(io.BytesIO(pdf)).pages[0]
    fonts = {str(font.get_object()["/BaseFont"]) for font in page["/Resources"]["/Font"].values()}
    assert any("Kurinto" in name for name in fonts), fonts


def test_shipments_with_tracking_and_the_note_are_listed() -> None:
    the_order = order(LINES, notes="Please gift wrap")
    assert the_order.id is not None
    shipment = m.Shipment(
        order_id=the_order.id,
        status=m.ShipmentStatus.LABEL_PURCHASED,
        parcels=[m.Parcel(weight=m.Weight.grams(900))],
        carrier="usps",
        service_code="usps_priority",
        tracking_number="9400111899223197428490",
    )
    draft = m.Shipment(order_id=the_order.id, parcels=[m.Parcel(weight=m.Weight.grams(100))])

    slip = pages(packing_slip(the_order, ship_from=SHIP_FROM, shipments=[shipment, draft]))[0]

    assert "usps usps_priority: tracking 9400111899223197428490 (1 parcel)" in slip
    assert slip.count("tracking") == 1
    assert "Please gift wrap" in slip


def test_an_order_without_an_address_says_so() -> None:
    slip = pages(packing_slip(order(LINES, shipping_address=None), ship_from=None))[0]

    assert "No shipping address on this order" in slip
    assert "From" not in slip.splitlines()


def test_the_same_order_gives_the_same_bytes() -> None:
    the_order = order(LINES)

    assert packing_slip(the_order, ship_from=SHIP_FROM) == packing_slip(the_order, ship_from=SHIP_FROM)


def test_order_numbers_and_file_names() -> None:
    assert order_number(order(LINES)) == "#1001"
    assert order_number(order(LINES, external_number=None)) == "450789469"
    unnamed = order(LINES, external_number=None, external_id=None)
    assert order_number(unnamed) == str(unnamed.id)[:8]
    assert file_safe("#1001") == "1001"
    assert file_safe("113-1234567-1234567") == "113-1234567-1234567"
    assert file_safe("注文 42") == "42"
    assert file_safe("../..") == "order"
