"""Shipping label files for the shipping sandboxes (Shippo, MyParcel.com): PDF, PNG and ZPL II.

A connector stores whatever the remote hands back and prints it, so the sandbox must hand back a real file: a PDF
that opens and whose text holds the tracking number, a PNG that decodes, ZPL a thermal printer would accept. The
look is a generic 4x6 carrier label: sender, recipient, service, a Code 128 barcode of the tracking number.

This module lives beside the sandboxes (not in crossdock proper) so a sandbox still imports nothing of the hub.
"""

from __future__ import annotations

import io
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from reportlab.graphics.barcode.code128 import Code128
from reportlab.lib.units import inch, mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

# Page sizes in points for the label formats the two APIs name (Shippo label_file_type, MyParcel.com label size).
PAGE_SIZES: dict[str, tuple[float, float]] = {
    "4x6": (4 * inch, 6 * inch),
    "4x8": (4 * inch, 8 * inch),
    "2.3x7.5": (2.3 * inch, 7.5 * inch),
    "A4": (210 * mm, 297 * mm),
    "A5": (148 * mm, 210 * mm),
    "A6": (105 * mm, 148 * mm),
}

_DEJAVU_CANDIDATES = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/dejavu/DejaVuSans.ttf"),
)


@dataclass(frozen=True)
class LabelData:
    carrier: str
    service: str
    tracking_number: str
    sender: list[str]
    recipient: list[str]
    created_at: datetime
    weight: str = ""
    reference: str = ""
    extra_lines: list[str] = field(default_factory=list)


@cache
def _latin_font() -> str:
    """A TrueType font with Cyrillic, Greek and Arabic glyphs when the system has one, else Helvetica."""
    for path in _DEJAVU_CANDIDATES:
        if path.exists():
            pdfmetrics.registerFont(TTFont("SandboxSans", str(path)))
            return "SandboxSans"
    return "Helvetica"


@cache
def _cid_font(name: str) -> str:
    # Adobe's standard CJK fonts ship with every PDF reader; reportlab only references them (nothing embedded).
    pdfmetrics.registerFont(UnicodeCIDFont(name))
    return name


def _font_for(text: str) -> str:
    """Pick a font that has glyphs for `text`: CJK text needs a CID font, the rest the Unicode TTF."""
    for ch in text:
        name = unicodedata.name(ch, "")
        if name.startswith("HANGUL"):
            return _cid_font("HYSMyeongJo-Medium")
        if name.startswith(("HIRAGANA", "KATAKANA")):
            return _cid_font("HeiseiMin-W3")
    if any(unicodedata.name(ch, "").startswith("CJK") for ch in text):
        return _cid_font("STSong-Light")
    return _latin_font()


def code128_modules(value: str) -> str:
    """Code 128 bar/space pattern of `value`: upper-case letters are bars, lower-case spaces, A=1 module."""
    symbol = Code128(value)
    symbol.validate()
    symbol.encode()
    symbol.decompose()
    return str(symbol.decomposed)


def render_pdf(label: LabelData, size: str = "4x6") -> bytes:
    """One-page PDF label; text is real text (not an image) so it can be searched and tested."""
    width, height = PAGE_SIZES.get(size, PAGE_SIZES["4x6"])
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=(width, height), invariant=True)
    canvas.setTitle(f"{label.carrier} label {label.tracking_number}")
    margin = 0.15 * inch
    scale = min(width / (4 * inch), 1.0)
    y = height - margin

    def line(text: str, size_pt: float, gap: float = 2.0) -> None:
        nonlocal y
        size_pt *= scale
        y -= size_pt + gap
        canvas.setFont(_font_for(text), size_pt)
        canvas.drawString(margin, y, text)

    line(f"{label.carrier.upper()}  {label.service}", 13)
    line(label.created_at.strftime("Ship date: %Y-%m-%d"), 8)
    if label.weight:
        line(f"Weight: {label.weight}", 8)
    y -= 4
    canvas.line(margin, y, width - margin, y)
    line("FROM:", 7)
    for text in label.sender:
        line(text, 8)
    y -= 4
    canvas.line(margin, y, width - margin, y)
    line("SHIP TO:", 8)
    for text in label.recipient:
        line(text, 11)
    for text in label.extra_lines:
        line(text, 8)
    y -= 6
    canvas.line(margin, y, width - margin, y)

    bar_height = 0.9 * inch * scale
    runs = _runs(code128_modules(label.tracking_number))
    module = min((width - 2 * margin) / sum(units for _, units in runs), 1.6)
    x = margin
    y -= bar_height + 6
    for is_bar, units in runs:
        if is_bar:
            canvas.rect(x, y, module * units, bar_height, stroke=0, fill=1)
        x += module * units
    line(f"TRACKING #: {label.tracking_number}", 10, gap=4)
    if label.reference:
        line(f"Ref: {label.reference}", 7)
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def _runs(pattern: str) -> list[tuple[bool, int]]:
    # The pattern repeats sizes as letters; summing per letter keeps the bar geometry exact.
    return [(ch.isupper(), ord(ch.upper()) - ord("A") + 1) for ch in pattern]


def render_png(label: LabelData, dpi: int = 203) -> bytes:
    """4x6 PNG at thermal-printer resolution (203 dpi), drawn with Pillow."""
    width, height = int(4 * dpi), int(6 * dpi)
    image = Image.new("L", (width, height), color=255)
    draw = ImageDraw.Draw(image)
    font_path = next((str(p) for p in _DEJAVU_CANDIDATES if p.exists()), None)

    def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        if font_path:
            return ImageFont.truetype(font_path, size)
        return ImageFont.load_default()

    y = 20
    for text, size in (
        (f"{label.carrier.upper()}  {label.service}", 34),
        (label.created_at.strftime("Ship date: %Y-%m-%d"), 20),
        ("FROM:", 18),
        *((t, 22) for t in label.sender),
        ("SHIP TO:", 22),
        *((t, 30) for t in label.recipient),
    ):
        draw.text((20, y), text, fill=0, font=font(size))
        y += size + 8
    y += 20
    runs = _runs(code128_modules(label.tracking_number))
    module = max(1, (width - 40) // sum(units for _, units in runs))
    x = 20
    for is_bar, units in runs:
        if is_bar:
            draw.rectangle((x, y, x + module * units - 1, y + 180), fill=0)
        x += module * units
    draw.text((20, y + 195), f"TRACKING #: {label.tracking_number}", fill=0, font=font(26))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def render_zpl(label: LabelData) -> bytes:
    """ZPL II for a 4x6 label at 203 dpi; ^CI28 makes the printer read the field data as UTF-8."""
    rows: list[str] = ["^XA", "^CI28", "^PW812", "^LL1218"]
    y = 30

    def field_(text: str, size: int) -> None:
        nonlocal y
        clean = text.replace("^", " ").replace("~", " ")
        rows.append(f"^FO30,{y}^A0N,{size},{size}^FD{clean}^FS")
        y += size + 10

    field_(f"{label.carrier.upper()}  {label.service}", 40)
    field_(label.created_at.strftime("Ship date: %Y-%m-%d"), 24)
    field_("FROM:", 20)
    for text in label.sender:
        field_(text, 24)
    field_("SHIP TO:", 26)
    for text in label.recipient:
        field_(text, 34)
    y += 20
    rows.append(f"^FO30,{y}^BY3^BCN,200,Y,N,N^FD{label.tracking_number}^FS")
    rows.append("^XZ")
    return ("\n".join(rows) + "\n").encode()
