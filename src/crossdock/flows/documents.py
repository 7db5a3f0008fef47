"""Packing slips: the A4 page that goes in the box with an order's items, as a PDF.

Names and addresses arrive in any script (Japanese, Cyrillic, Greek, Arabic...), which the 14 core PDF fonts
cannot show, so the slip embeds subsets of TrueType fonts under the SIL Open Font License 1.1, installed from
PyPI with the weblate-fonts package: Source Sans 3 (Latin, Greek, Cyrillic) sets the slip, and Kurinto Sans
(Arabic, Hebrew and many more scripts) and its Japanese, Chinese and Korean cuts stand in for characters
Source Sans lacks. A character no font has is drawn as U+FFFD and listed at the end of the slip, so a missing
glyph is never silently blank.

Pure: builds the PDF in memory; the only I/O is reading the font files.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files
from pathlib import Path

from fontTools.ttLib import TTFont
from fpdf import FPDF
from fpdf.enums import Align, TableBordersLayout, TableCellFillMode, XPos, YPos
from fpdf.fonts import FontFace

from crossdock import model as m

MAIN_FAMILY = "SourceSans3"
# Tried in this order for a character the main font lacks. Japanese before Chinese: the slip's CJK text is most
# often a Japanese address, and the JP cut draws shared Han characters the Japanese way.
FALLBACK_FAMILIES = ("KurintoSans", "KurintoSansJP", "KurintoSansSC", "KurintoSansTC", "KurintoSansKR")
REPLACEMENT = "\ufffd"
_NOT_SHIPPED = "does not ship"
# The slip's date stamp: a fixed creation date keeps the bytes of one order's slip the same on every render.
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def font_dir() -> Path:
    """Where the weblate-fonts package keeps its fonts (one folder per family, TrueType files in ttf/)."""
    return Path(str(files("weblate_fonts").joinpath("static", "weblate_fonts")))


def font_file(family: str, bold: bool = False) -> Path:
    if family == MAIN_FAMILY:
        return font_dir() / "source-sans" / "ttf" / f"{family}-{'Bold' if bold else 'Regular'}.ttf"
    return font_dir() / "kurinto" / "ttf" / f"{family}-{'Bd' if bold else 'Rg'}.ttf"


@cache
def _coverage(family: str) -> frozenset[int]:
    """The code points a family's regular cut has glyphs for (its cmap), read once per process."""
    path = font_file(family)
    if not path.exists():
        raise FileNotFoundError(
            f"the packing-slip font {path.name} is not installed; reinstall crossdock's dependencies "
            "(pip install weblate-fonts)"
        )
    font = TTFont(str(path), lazy=True)
    try:
        return frozenset(font.getBestCmap())
    finally:
        font.close()


@dataclass
class _Text:
    """Every string the slip prints, made printable: characters no font has become U+FFFD, and are noted."""

    fallbacks: list[str] = field(default_factory=list)
    missing: dict[str, None] = field(default_factory=dict)

    def __call__(self, value: object) -> str:
        out: list[str] = []
        for ch in " ".join(str(value).split()):  # one line: tabs and newlines from a remote become spaces
            if ch == " " or self._covered(ch):
                out.append(ch)
            else:
                self.missing.setdefault(ch, None)
                # The replacement character itself comes from a fallback font: _covered registers it.
                out.append(REPLACEMENT if self._covered(REPLACEMENT) else "?")
        return "".join(out)

    def _covered(self, ch: str) -> bool:
        code = ord(ch)
        if code in _coverage(MAIN_FAMILY):
            return True
        for family in FALLBACK_FAMILIES:
            if code in _coverage(family):
                if family not in self.fallbacks:
                    self.fallbacks.append(family)
                return True
        return unicodedata.category(ch) in {"Mn", "Me", "Cf"}  # marks and joiners shape with their base


def address_lines(address: m.Address) -> list[str]:
    """The address as printed: name, company, street lines, postal code and city, region, country, phone."""
    place = " ".join(part for part in (address.postal_code, address.city) if part)
    lines = [
        address.name,
        address.company,
        address.line1,
        address.line2,
        address.line3,
        place,
        address.subdivision,
        address.country_name,
        address.phone,
    ]
    return [line for line in lines if line]


def order_number(order: m.Order) -> str:
    """The number a person knows the order by: the channel's number, else its id there, else crossdock's."""
    return order.external_number or order.external_id or str(order.id or "")[:8] or "new"


def file_safe(text: str) -> str:
    """`text` fit for a download's file name: letters, digits, dot, dash and underscore, '#' and spaces dropped."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "order"


class _Slip(FPDF):
    def __init__(self, number: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.number = number

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(MAIN_FAMILY, "", 8)
        self.set_text_color(90)
        # A page count ({nb}) cannot be used with text shaping (fpdf2 Text Shaping docs,
        # https://py-pdf.github.io/fpdf2/TextShaping.html), so each page says only its number.
        self.cell(0, 5, f"Order {self.number} · page {self.page_no()}", align=Align.C)


def packing_slip(
    order: m.Order,
    *,
    ship_from: m.Address | None,
    shipments: Sequence[m.Shipment] = (),
    channel: str | None = None,
) -> bytes:
    """The order's packing slip as A4 PDF bytes: sender and ship-to addresses, order number and date, the
    channel's reference, one table row per line (SKU, title, quantity; lines that do not ship say so), the item
    count, and the shipments' tracking numbers when given. More pages when the lines run over one."""
    text = _Text()
    number = text(order_number(order))
    placed = order.placed_at.astimezone(UTC).date().isoformat() if order.placed_at else "not given"
    reference = None
    if order.external_id:
        reference = text(f"{channel} order {order.external_id}" if channel else order.external_id)
    sender = [text(line) for line in address_lines(ship_from)] if ship_from else []
    recipient = (
        [text(line) for line in address_lines(order.shipping_address)]
        if order.shipping_address
        else ["No shipping address on this order"]
    )
    rows = [
        (
            str(position),
            text(line.sku or "—"),
            text(line.title) + ("" if line.requires_shipping else f" ({_NOT_SHIPPED})"),
            str(line.quantity),
        )
        for position, line in enumerate(order.lines, start=1)
    ]
    tracking = [text(_shipment_line(s)) for s in shipments if s.tracking_number]
    note = text(order.notes) if order.notes else None

    pdf = _Slip(number)
    _add_fonts(pdf, text.fallbacks)
    pdf.set_title(f"Packing slip {number}")
    pdf.set_creator("crossdock")
    pdf.set_creation_date(order.placed_at or _EPOCH)
    pdf.set_margins(15, 15, 15)
    pdf.set_auto_page_break(True, margin=18)
    pdf.add_page()

    pdf.set_font(MAIN_FAMILY, "B", 20)
    pdf.cell(0, 10, "Packing slip", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(MAIN_FAMILY, "", 10)
    facts = [("Order", number), ("Date", placed)]
    if reference:
        facts.append(("Channel reference", reference))
    for label, value in facts:
        pdf.set_font(MAIN_FAMILY, "B", 10)
        pdf.cell(40, 6, label)
        pdf.set_font(MAIN_FAMILY, "", 10)
        pdf.cell(0, 6, value, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(4)

    _addresses(pdf, sender, recipient)
    pdf.ln(6)
    _lines_table(pdf, rows)
    pdf.ln(4)

    shipped = sum(line.quantity for line in order.lines if line.requires_shipping)
    pdf.set_font(MAIN_FAMILY, "B", 11)
    pdf.cell(0, 7, f"Items to ship: {shipped}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    unshipped = sum(line.quantity for line in order.lines if not line.requires_shipping)
    pdf.set_font(MAIN_FAMILY, "", 10)
    if unshipped:
        pdf.cell(0, 6, f"Items that do not ship: {unshipped}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if tracking:
        pdf.ln(2)
        pdf.set_font(MAIN_FAMILY, "B", 10)
        pdf.cell(0, 6, "Shipments", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font(MAIN_FAMILY, "", 10)
        for line in tracking:
            pdf.multi_cell(0, 5, line, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if note:
        pdf.ln(2)
        pdf.set_font(MAIN_FAMILY, "B", 10)
        pdf.cell(0, 6, "Note", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font(MAIN_FAMILY, "", 10)
        pdf.multi_cell(0, 5, note, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if text.missing:
        pdf.ln(3)
        pdf.set_font(MAIN_FAMILY, "", 8)
        names = ", ".join(f"U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed')}" for ch in text.missing)
        pdf.multi_cell(
            0,
            4,
            f"{REPLACEMENT} stands for characters this slip's fonts cannot show: {names}",
            new_x=XPos.LMARGIN,
        )
    return bytes(pdf.output())


def _add_fonts(pdf: FPDF, fallbacks: Iterable[str]) -> None:
    pdf.add_font(MAIN_FAMILY, "", str(font_file(MAIN_FAMILY)))
    pdf.add_font(MAIN_FAMILY, "B", str(font_file(MAIN_FAMILY, bold=True)))
    # Only the fallbacks this order's text needs: each is several megabytes to parse. Fallback fonts are fpdf2's
    # own mechanism (https://py-pdf.github.io/fpdf2/Unicode.html#fallback-fonts); exact_match=False lets bold
    # text fall back to a regular cut rather than to no glyph.
    families = list(fallbacks)
    for family in families:
        pdf.add_font(family, "", str(font_file(family)))
    if families:
        pdf.set_fallback_fonts(families, exact_match=False)
    # HarfBuzz shaping (uharfbuzz) joins Arabic letters and orders right-to-left runs
    # (https://py-pdf.github.io/fpdf2/TextShaping.html).
    pdf.set_text_shaping(True)


def _addresses(pdf: FPDF, sender: list[str], recipient: list[str]) -> None:
    top = pdf.get_y()
    half = (pdf.w - pdf.l_margin - pdf.r_margin) / 2
    columns = [("Ship to", recipient, pdf.l_margin)]
    if sender:
        columns.append(("From", sender, pdf.l_margin + half))
    bottom = top
    for heading, lines, x in columns:
        pdf.set_xy(x, top)
        pdf.set_font(MAIN_FAMILY, "B", 10)
        pdf.cell(half - 4, 6, heading, new_x=XPos.LEFT, new_y=YPos.NEXT)
        pdf.set_font(MAIN_FAMILY, "", 12 if heading == "Ship to" else 10.5)
        for line in lines:
            pdf.multi_cell(half - 4, 5.5, line, new_x=XPos.LEFT, new_y=YPos.NEXT)
        bottom = max(bottom, pdf.get_y())
    pdf.set_xy(pdf.l_margin, bottom)


def _lines_table(pdf: FPDF, rows: list[tuple[str, str, str, str]]) -> None:
    pdf.set_font(MAIN_FAMILY, "", 10)
    with pdf.table(
        col_widths=(8, 42, 120, 14),
        text_align=(Align.R, Align.L, Align.L, Align.R),
        borders_layout=TableBordersLayout.HORIZONTAL_LINES,
        cell_fill_color=245,
        cell_fill_mode=TableCellFillMode.ROWS,
        headings_style=FontFace(emphasis="BOLD"),
        line_height=6,
        padding=(1, 1.5),
        repeat_headings=1,
    ) as table:
        heading = table.row()
        for title in ("#", "SKU", "Item", "Qty"):
            heading.cell(title)
        for cells in rows:
            row = table.row()
            for value in cells:
                row.cell(value)


def _shipment_line(shipment: m.Shipment) -> str:
    service = " ".join(part for part in (shipment.carrier, shipment.service_code) if part)
    parcels = f"{len(shipment.parcels)} parcel{'s' if len(shipment.parcels) != 1 else ''}"
    return f"{service or 'Shipment'}: tracking {shipment.tracking_number} ({parcels})"
