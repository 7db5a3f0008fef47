"""Deterministic, seeded test data: people, addresses and line items from many countries and scripts.

Connectors must survive real customers: names in Cyrillic, kanji, Arabic or Greek, addresses without a
province, zero- and three-decimal currencies. Everything here comes from one `random.Random(seed)`, so a seed
always yields the same data.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

# ISO 4217 minor units for the currencies used here (ISO 4217 list one: JPY/KRW 0, BHD/KWD 3).
MINOR_UNITS: dict[str, int] = {"JPY": 0, "KRW": 0, "BHD": 3, "KWD": 3}


def minor_units(currency: str) -> int:
    """Decimal places of a currency's minor unit (2 unless listed in MINOR_UNITS)."""
    return MINOR_UNITS.get(currency.upper(), 2)


def quantize_money(amount: Decimal, currency: str) -> Decimal:
    """Round an amount to the currency's minor units (half up, as shops display prices)."""
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Person:
    first_name: str
    last_name: str
    full_name: str
    email: str
    phone: str | None
    company: str | None
    script: str


@dataclass(frozen=True)
class Address:
    first_name: str
    last_name: str
    company: str | None
    line1: str
    line2: str | None
    city: str
    province: str | None
    province_code: str | None
    postal_code: str | None
    country_code: str
    country_name: str
    phone: str | None


@dataclass(frozen=True)
class Item:
    sku: str
    title: str
    quantity: int
    unit_price: Decimal
    grams: int
    requires_shipping: bool


@dataclass(frozen=True)
class _City:
    name: str
    province: str | None
    province_code: str | None
    # '#' is a digit, '@' an upper-case letter; None: the country has no postal codes (AE).
    postal: str | None


@dataclass(frozen=True)
class _Country:
    code: str
    name: str
    script: str
    currency: str
    calling_code: str
    national_digits: int
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    streets: tuple[str, ...]
    # {street} {number}; how a country writes its street line.
    street_format: str
    cities: tuple[_City, ...]
    # Names in this script are given family name first (JP, CN, KR).
    family_first: bool = False
    email_local: tuple[str, ...] = ()


def _c(name: str, province: str | None, code: str | None, postal: str | None) -> _City:
    return _City(name, province, code, postal)


_COUNTRIES: tuple[_Country, ...] = (
    _Country(
        "US",
        "United States",
        "Latin",
        "USD",
        "1",
        10,
        (
            "James",
            "Mary",
            "Robert",
            "Patricia",
            "Michael",
            "Jennifer",
            "Carlos",
            "Aaliyah",
            "Nguyen",
            "Chloe",
        ),
        ("Smith", "Johnson", "Williams", "Brown", "Garcia", "Miller", "Davis", "Rodriguez", "O'Neil", "Lee"),
        ("Main St", "Oak Ave", "Maple Dr", "Sunset Blvd", "Broadway", "Elm St", "Market St"),
        "{number} {street}",
        (
            _c("New York", "New York", "NY", "100##"),
            _c("Los Angeles", "California", "CA", "900##"),
            _c("Chicago", "Illinois", "IL", "606##"),
            _c("Austin", "Texas", "TX", "787##"),
            _c("Seattle", "Washington", "WA", "981##"),
            _c("Miami", "Florida", "FL", "331##"),
        ),
    ),
    _Country(
        "CA",
        "Canada",
        "Latin",
        "CAD",
        "1",
        10,
        ("Liam", "Olivia", "Noah", "Émilie", "Étienne", "Zoë", "Logan"),
        ("Tremblay", "Gagnon", "Roy", "Côté", "Wilson", "MacDonald", "Bouchard"),
        ("Rue Sainte-Catherine", "Yonge St", "Granville St", "Rue Saint-Denis"),
        "{number} {street}",
        (
            _c("Montréal", "Quebec", "QC", "H#@ #@#"),
            _c("Toronto", "Ontario", "ON", "M#@ #@#"),
            _c("Vancouver", "British Columbia", "BC", "V#@ #@#"),
        ),
    ),
    _Country(
        "GB",
        "United Kingdom",
        "Latin",
        "GBP",
        "44",
        10,
        ("Oliver", "Amelia", "George", "Isla", "Harry", "Siobhán", "Rhys", "Priya"),
        ("Smith", "Jones", "Taylor", "Brown", "Evans", "Ó Briain", "Patel", "Wright"),
        ("High Street", "Station Road", "Church Lane", "Victoria Road", "Mill Lane"),
        "{number} {street}",
        (
            _c("London", "England", "ENG", "SW# #@@"),
            _c("Manchester", "England", "ENG", "M# #@@"),
            _c("Edinburgh", "Scotland", "SCT", "EH# #@@"),
            _c("Cardiff", "Wales", "WLS", "CF## #@@"),
        ),
    ),
    _Country(
        "DE",
        "Germany",
        "Latin",
        "EUR",
        "49",
        11,
        ("Lukas", "Sophie", "Jürgen", "Käthe", "Maximilian", "Hannah", "Özlem", "Björn"),
        # Turkish dotless i on purpose: German customers include Turkish names.
        ("Müller", "Schmidt", "Schneider", "Weiß", "Groß", "Becker", "Yılmaz", "Hoffmann"),  # noqa: RUF001
        ("Hauptstraße", "Schillerstraße", "Goethestraße", "Bahnhofstraße", "Königsallee"),
        "{street} {number}",
        (
            _c("Berlin", "Berlin", "BE", "10###"),
            _c("München", "Bayern", "BY", "80###"),
            _c("Köln", "Nordrhein-Westfalen", "NW", "50###"),
            _c("Hamburg", "Hamburg", "HH", "20###"),
        ),
    ),
    _Country(
        "FR",
        "France",
        "Latin",
        "EUR",
        "33",
        9,
        ("Léa", "Hugo", "Chloé", "Théo", "Anaïs", "François", "Zoé"),
        ("Martin", "Bernard", "Dubois", "Lefèvre", "Girard", "Rousseau", "Mercier"),
        ("rue de la Paix", "avenue des Champs-Élysées", "boulevard Haussmann", "rue de Rivoli"),
        "{number} {street}",
        (
            _c("Paris", None, None, "750##"),
            _c("Lyon", None, None, "6900#"),
            _c("Marseille", None, None, "130##"),
        ),
    ),
    _Country(
        "NL",
        "Netherlands",
        "Latin",
        "EUR",
        "31",
        9,
        ("Daan", "Emma", "Sem", "Julia", "Bram", "Fenna"),
        ("de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker"),
        ("Kalverstraat", "Damrak", "Oudegracht", "Coolsingel", "Prinsengracht"),
        "{street} {number}",
        (
            _c("Amsterdam", "Noord-Holland", "NH", "10## @@"),
            _c("Utrecht", "Utrecht", "UT", "35## @@"),
            _c("Rotterdam", "Zuid-Holland", "ZH", "30## @@"),
        ),
    ),
    _Country(
        "ES",
        "Spain",
        "Latin",
        "EUR",
        "34",
        9,
        ("Lucía", "Hugo", "Martina", "Álvaro", "Sofía", "Iñigo"),
        ("García", "Fernández", "González", "Rodríguez", "López", "Muñoz"),
        ("Calle Mayor", "Gran Vía", "Calle de Alcalá", "Passeig de Gràcia"),
        "{street}, {number}",
        (
            _c("Madrid", "Madrid", "M", "280##"),
            _c("Barcelona", "Barcelona", "B", "080##"),
            _c("Sevilla", "Sevilla", "SE", "410##"),
        ),
    ),
    _Country(
        "PL",
        "Poland",
        "Latin",
        "PLN",
        "48",
        9,
        ("Łukasz", "Zofia", "Jakub", "Małgorzata", "Wojciech", "Agnieszka"),
        ("Nowak", "Kowalski", "Wiśniewski", "Wójcik", "Kamiński", "Lewandowska"),
        ("ul. Marszałkowska", "ul. Długa", "ul. Piotrkowska", "ul. Floriańska"),
        "{street} {number}",
        (
            _c("Warszawa", "Mazowieckie", "MZ", "00-###"),
            _c("Kraków", "Małopolskie", "MA", "30-###"),
            _c("Łódź", "Łódzkie", "LD", "90-###"),
        ),
    ),
    _Country(
        "SE",
        "Sweden",
        "Latin",
        "SEK",
        "46",
        9,
        ("Åsa", "Björn", "Elsa", "Oskar", "Maja"),
        ("Andersson", "Johansson", "Karlsson", "Nilsson", "Öberg"),
        ("Drottninggatan", "Storgatan", "Kungsgatan", "Götgatan"),
        "{street} {number}",
        (_c("Stockholm", None, None, "1## ##"), _c("Göteborg", None, None, "4## ##")),
    ),
    _Country(
        "RU",
        "Russia",
        "Cyrillic",
        "RUB",
        "7",
        10,
        ("Александр", "Мария", "Дмитрий", "Анна", "Сергей", "Екатерина"),
        ("Иванов", "Смирнова", "Кузнецов", "Попова", "Соколов", "Лебедева"),
        ("ул. Тверская", "Невский проспект", "ул. Арбат", "ул. Ленина"),
        "{street}, д. {number}",
        (_c("Москва", "Москва", "MOW", "1#####"), _c("Санкт-Петербург", "Санкт-Петербург", "SPE", "19####")),
    ),
    _Country(
        "UA",
        "Ukraine",
        "Cyrillic",
        "UAH",
        "380",
        9,
        ("Олександр", "Оксана", "Андрій", "Ірина", "Богдан", "Наталія"),
        ("Шевченко", "Коваленко", "Бондаренко", "Ткаченко", "Кравчук"),
        ("вул. Хрещатик", "вул. Шевченка", "просп. Свободи", "вул. Дерибасівська"),
        "{street}, {number}",
        (
            _c("Київ", "Київ", "30", "01###"),
            _c("Львів", "Львівська область", "46", "79###"),
            _c("Одеса", "Одеська область", "51", "65###"),
        ),
    ),
    _Country(
        # Bulgaria adopted the euro on 2026-01-01 (Council decision of July 2025).
        "BG",
        "Bulgaria",
        "Cyrillic",
        "EUR",
        "359",
        9,
        ("Георги", "Мария", "Иван", "Елена", "Димитър"),
        ("Иванов", "Георгиева", "Петров", "Димитрова", "Николов"),
        ("ул. Витоша", "бул. Христо Ботев", "ул. Раковски"),
        "{street} {number}",
        (_c("София", "София", "22", "1###"), _c("Пловдив", "Пловдив", "16", "4###")),
    ),
    _Country(
        "GR",
        "Greece",
        "Greek",
        "EUR",
        "30",
        10,
        ("Γιώργος", "Μαρία", "Νίκος", "Ελένη", "Δημήτρης", "Κατερίνα"),
        ("Παπαδόπουλος", "Οικονόμου", "Γεωργίου", "Νικολάου", "Παπαδάκη"),
        ("Οδός Ερμού", "Λεωφόρος Αθηνών", "Οδός Αριστοτέλους", "Οδός Πανεπιστημίου"),
        "{street} {number}",
        (_c("Αθήνα", "Αττική", "I", "10# ##"), _c("Θεσσαλονίκη", "Κεντρική Μακεδονία", "B", "54# ##")),
    ),
    _Country(
        "JP",
        "Japan",
        "Han/Kana",
        "JPY",
        "81",
        10,
        ("翔太", "さくら", "健", "陽菜", "大輔", "美咲"),
        ("佐藤", "鈴木", "高橋", "田中", "渡辺", "伊藤"),
        ("千代田1丁目", "神南1丁目", "梅田3丁目", "栄2丁目"),
        "{street}{number}番",
        (
            _c("千代田区", "東京都", "JP-13", "100-####"),
            _c("渋谷区", "東京都", "JP-13", "150-####"),
            _c("大阪市北区", "大阪府", "JP-27", "530-####"),
            _c("名古屋市中区", "愛知県", "JP-23", "460-####"),
        ),
        family_first=True,
        email_local=("sato", "suzuki", "takahashi", "tanaka", "watanabe", "ito"),
    ),
    _Country(
        "CN",
        "China",
        "Han",
        "CNY",
        "86",
        11,
        ("伟", "芳", "娜", "敏", "静", "磊"),
        ("王", "李", "张", "刘", "陈", "杨"),
        ("南京东路", "长安街", "中山路", "人民路"),
        "{street}{number}号",
        (
            _c("上海市", "上海", "SH", "200###"),
            _c("北京市", "北京", "BJ", "100###"),
            _c("广州市", "广东", "GD", "510###"),
        ),
        family_first=True,
        email_local=("wang", "li", "zhang", "liu", "chen", "yang"),
    ),
    _Country(
        "KR",
        "South Korea",
        "Hangul",
        "KRW",
        "82",
        10,
        ("민준", "서연", "지호", "하은", "도윤"),
        ("김", "이", "박", "최", "정"),
        ("세종대로", "테헤란로", "해운대로", "중앙대로"),
        "{street} {number}",
        (_c("서울특별시", "서울", "KR-11", "0####"), _c("부산광역시", "부산", "KR-26", "4####")),
        family_first=True,
        email_local=("kim", "lee", "park", "choi", "jung"),
    ),
    _Country(
        "AE",
        "United Arab Emirates",
        "Arabic",
        "AED",
        "971",
        9,
        ("محمد", "فاطمة", "أحمد", "مريم", "خالد"),
        ("المنصوري", "الكعبي", "الشامسي", "النعيمي", "الظاهري"),
        ("شارع الشيخ زايد", "شارع الوصل", "شارع حمدان"),
        "{number} {street}",
        # The UAE has no postal codes: the connector must cope with an empty zip.
        (_c("دبي", "Dubai", "DU", None), _c("أبو ظبي", "Abu Dhabi", "AZ", None)),
        email_local=("mohammed", "fatima", "ahmed", "maryam", "khalid"),
    ),
    _Country(
        "SA",
        "Saudi Arabia",
        "Arabic",
        "SAR",
        "966",
        9,
        ("عبدالله", "نورة", "سعود", "سارة", "فهد"),
        ("العتيبي", "القحطاني", "الغامدي", "الشهري", "الدوسري"),
        ("طريق الملك فهد", "شارع التحلية", "طريق الملك عبدالعزيز"),
        "{number} {street}",
        (_c("الرياض", None, None, "1####"), _c("جدة", None, None, "2####")),
        email_local=("abdullah", "noura", "saud", "sara", "fahad"),
    ),
    _Country(
        "EG",
        "Egypt",
        "Arabic",
        "EGP",
        "20",
        10,
        ("مصطفى", "ياسمين", "عمر", "هبة", "كريم"),
        ("حسن", "إبراهيم", "عبد الرحمن", "السيد", "محمود"),
        ("شارع التحرير", "شارع الهرم", "كورنيش النيل"),
        "{number} {street}",
        (_c("القاهرة", "Cairo", "C", "11###"), _c("الإسكندرية", "Alexandria", "ALX", "21###")),
        email_local=("mostafa", "yasmin", "omar", "heba", "karim"),
    ),
    _Country(
        "KW",
        "Kuwait",
        "Arabic",
        "KWD",
        "965",
        8,
        ("جاسم", "دانة", "يوسف", "شيخة"),
        ("الصباح", "العنزي", "المطيري", "الرشيدي"),
        ("شارع الخليج العربي", "شارع فهد السالم"),
        "{number} {street}",
        (_c("مدينة الكويت", None, None, "1####"),),
        email_local=("jassim", "dana", "yousef", "sheikha"),
    ),
    _Country(
        "IL",
        "Israel",
        "Hebrew",
        "ILS",
        "972",
        9,
        ("נועה", "יוסף", "מאיה", "דוד", "תמר"),
        ("כהן", "לוי", "מזרחי", "פרץ", "ביטון"),
        ("רחוב הרצל", "שדרות רוטשילד", "רחוב יפו"),
        "{street} {number}",
        (_c("תל אביב", None, None, "6######"), _c("ירושלים", None, None, "9######")),
        email_local=("noa", "yosef", "maya", "david", "tamar"),
    ),
    _Country(
        "IN",
        "India",
        "Devanagari",
        "INR",
        "91",
        10,
        ("आरव", "अनन्या", "विवान", "दिया", "Rohan", "Priya"),
        ("शर्मा", "वर्मा", "गुप्ता", "Iyer", "Reddy"),
        ("महात्मा गांधी मार्ग", "MG Road", "Linking Road", "नेहरू मार्ग"),
        "{number}, {street}",
        (
            _c("मुंबई", "Maharashtra", "MH", "400###"),
            _c("नई दिल्ली", "Delhi", "DL", "110###"),
            _c("Bengaluru", "Karnataka", "KA", "560###"),
        ),
        email_local=("aarav", "ananya", "vivaan", "diya", "rohan", "priya"),
    ),
    _Country(
        "BH",
        "Bahrain",
        "Arabic",
        "BHD",
        "973",
        8,
        ("علي", "زينب", "حسين", "ليلى"),
        ("آل خليفة", "البحارنة", "الجلاهمة"),
        ("شارع الحكومة", "شارع المعارض"),
        "{number} {street}",
        (_c("المنامة", None, None, "3##"),),
        email_local=("ali", "zainab", "hussain", "layla"),
    ),
)

# Rough weights: most orders come from a few big markets, the long tail still shows up often enough.
_COUNTRY_WEIGHTS: dict[str, int] = {"US": 20, "GB": 8, "DE": 8, "CA": 5, "FR": 5, "NL": 4, "JP": 4}

_COUNTRY_BY_CODE: dict[str, _Country] = {c.code: c for c in _COUNTRIES}

_CURRENCY_BY_COUNTRY: dict[str, str] = {c.code: c.currency for c in _COUNTRIES} | {
    "AT": "EUR",
    "BE": "EUR",
    "IE": "EUR",
    "IT": "EUR",
    "PT": "EUR",
    "FI": "EUR",
    "CH": "CHF",
    "AU": "AUD",
    "NZ": "NZD",
    "DK": "DKK",
    "NO": "NOK",
    "CZ": "CZK",
    "MX": "MXN",
    "BR": "BRL",
}

# Approximate units of each currency per USD, only to make prices look plausible.
_PER_USD: dict[str, Decimal] = {
    "USD": Decimal(1),
    "CAD": Decimal("1.37"),
    "GBP": Decimal("0.79"),
    "EUR": Decimal("0.92"),
    "PLN": Decimal("4.0"),
    "SEK": Decimal("10.6"),
    "RUB": Decimal("92"),
    "UAH": Decimal("41"),
    "JPY": Decimal(150),
    "CNY": Decimal("7.2"),
    "KRW": Decimal(1350),
    "AED": Decimal("3.67"),
    "SAR": Decimal("3.75"),
    "EGP": Decimal("48"),
    "KWD": Decimal("0.307"),
    "BHD": Decimal("0.376"),
    "ILS": Decimal("3.7"),
    "INR": Decimal("83"),
    "CHF": Decimal("0.88"),
    "AUD": Decimal("1.5"),
    "NZD": Decimal("1.65"),
    "DKK": Decimal("6.9"),
    "NOK": Decimal("10.7"),
    "CZK": Decimal("23"),
    "MXN": Decimal("17"),
    "BRL": Decimal("5.0"),
}

# (sku, title, USD price, grams, requires_shipping); a gift card and a digital item need no shipping.
_CATALOG: tuple[tuple[str, str, str, int, bool], ...] = (
    ("TSHIRT-BLK-M", "Organic Cotton T-Shirt - Black / M", "24.00", 180, True),
    ("TSHIRT-WHT-L", "Organic Cotton T-Shirt - White / L", "24.00", 190, True),
    ("HOODIE-GRY-S", "Heavyweight Hoodie - Grey / S", "59.90", 650, True),
    ("MUG-CERAMIC", "Ceramic Mug 350 ml", "14.50", 420, True),
    ("BOTTLE-STEEL", "Insulated Steel Bottle 750 ml", "32.00", 390, True),
    ("CANDLE-CEDAR", "Cedar & Amber Candle", "28.00", 510, True),
    ("NOTEBOOK-A5", "Dot-Grid Notebook A5", "12.95", 240, True),
    ("BACKPACK-20L", "Roll-Top Backpack 20 L", "119.00", 980, True),
    ("SNEAKER-42", "Canvas Sneaker - EU 42", "79.00", 850, True),
    ("SOCKS-3PK", "Merino Socks (3-pack)", "21.00", 150, True),
    ("HEADPHONES-BT", "Wireless Headphones", "149.99", 260, True),
    ("LAMP-DESK", "Brass Desk Lamp", "89.00", 1750, True),
    ("COFFEE-1KG", "Single-Origin Coffee Beans 1 kg", "34.00", 1020, True),
    ("POSTER-50X70", "Art Print 50x70 cm", "39.00", 300, True),
    ("GIFTCARD-50", "Gift Card", "50.00", 0, False),
    ("EBOOK-GUIDE", "Field Guide (e-book)", "9.99", 0, False),
)


# Public view of the catalog, for sandboxes that expose products, variants or stock levels.
CATALOG: tuple[tuple[str, str, str, int, bool], ...] = _CATALOG


def from_usd(amount: Decimal, currency: str) -> Decimal:
    """A USD amount in `currency` at a rough fixed rate, rounded to the currency's minor units."""
    converted = amount * _PER_USD.get(currency.upper(), Decimal(1))
    if minor_units(currency) == 0:
        # Zero-decimal shops price in round numbers (e.g. 3600 JPY, not 3599.55).
        converted = (converted / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP) * 100
    return quantize_money(converted, currency)


class DataGen:
    """Seeded generator of people, addresses, line items and instants."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self._codes = [c.code for c in _COUNTRIES]
        self._weights = [_COUNTRY_WEIGHTS.get(c.code, 2) for c in _COUNTRIES]

    # -- countries -------------------------------------------------------------------------------------------
    @staticmethod
    def country_codes() -> list[str]:
        return [c.code for c in _COUNTRIES]

    def country(self) -> str:
        """A weighted random ISO alpha-2 country code."""
        return self.rng.choices(self._codes, weights=self._weights, k=1)[0]

    def _country(self, code: str | None) -> _Country:
        if code is None:
            code = self.country()
        try:
            return _COUNTRY_BY_CODE[code.upper()]
        except KeyError:
            raise ValueError(f"DataGen knows no country {code!r}; known: {', '.join(self._codes)}") from None

    def currency_for(self, country_code: str) -> str:
        return _CURRENCY_BY_COUNTRY.get(country_code.upper(), "USD")

    # -- people and addresses --------------------------------------------------------------------------------
    def _fill(self, pattern: str) -> str:
        return "".join(
            str(self.rng.randrange(10))
            if ch == "#"
            else self.rng.choice("ABDEFGHJLNPQRSTUWXYZ")
            if ch == "@"
            else ch
            for ch in pattern
        )

    def _phone(self, c: _Country) -> str:
        # E.164 shape: + country code + national number without trunk prefix; first digit never 0.
        digits = str(self.rng.randrange(1, 10)) + "".join(
            str(self.rng.randrange(10)) for _ in range(c.national_digits - 1)
        )
        return f"+{c.calling_code}{digits}"

    def person(self, country_code: str | None = None) -> Person:
        c = self._country(country_code)
        i_first = self.rng.randrange(len(c.first_names))
        i_last = self.rng.randrange(len(c.last_names))
        first, last = c.first_names[i_first], c.last_names[i_last]
        # Chinese, Japanese and Korean write family name first, without a space.
        full = f"{last}{first}" if c.family_first else f"{first} {last}"
        # E-mail local parts stay ASCII, as most real shops' customers' addresses are.
        local = self.rng.choice(c.email_local) if c.email_local else _ascii_fold(f"{first}.{last}")
        local = f"{local}{self.rng.randrange(1, 1000)}"
        domain = self.rng.choice(("example.com", "example.org", "example.net", "mail.example"))
        phone = self._phone(c) if self.rng.random() < 0.8 else None
        company = (
            self.rng.choice(("Acme", "Nordwind", "Globex", "Initech", "Umbrella", "Stark"))
            + " "
            + self.rng.choice(("GmbH", "Ltd", "LLC", "B.V.", "S.A.", "Co."))
            if self.rng.random() < 0.15
            else None
        )
        return Person(first, last, full, f"{local}@{domain}".lower(), phone, company, c.script)

    def address(self, country_code: str | None = None, person: Person | None = None) -> Address:
        c = self._country(country_code)
        p = person if person is not None else self.person(c.code)
        city = self.rng.choice(c.cities)
        line1 = c.street_format.format(street=self.rng.choice(c.streets), number=self.rng.randrange(1, 250))
        line2_options: tuple[str, ...] = {
            "Latin": ("Apt 4B", "Suite 200", "2nd floor", "c/o Reception"),
            "Cyrillic": ("кв. 12", "офис 3", "подъезд 2"),
            "Greek": ("Διαμ. 5", "2ος όροφος"),  # noqa: RUF001 (Greek on purpose)
            "Han/Kana": ("サンシャインビル 5F", "グランドメゾン 301"),
            "Han": ("3号楼 1201室", "A座 8层"),
            "Hangul": ("101동 1203호", "3층"),
            "Arabic": ("شقة 12", "الطابق 3"),
            "Hebrew": ("דירה 7", "קומה 2"),
            "Devanagari": ("फ्लैट 12", "Floor 3"),
        }.get(c.script, ("Apt 1",))
        line2 = self.rng.choice(line2_options) if self.rng.random() < 0.3 else None
        return Address(
            first_name=p.first_name,
            last_name=p.last_name,
            company=p.company,
            line1=line1,
            line2=line2,
            city=city.name,
            province=city.province,
            province_code=city.province_code,
            postal_code=self._fill(city.postal) if city.postal else None,
            country_code=c.code,
            country_name=c.name,
            phone=p.phone,
        )

    # -- goods -----------------------------------------------------------------------------------------------
    def line_items(self, currency: str, n: int | None = None) -> list[Item]:
        if n is None:
            n = self.rng.choices((1, 2, 3, 4, 5), weights=(45, 30, 15, 7, 3), k=1)[0]
        picks = self.rng.sample(range(len(_CATALOG)), k=min(n, len(_CATALOG)))
        items: list[Item] = []
        for i in picks:
            sku, title, usd, grams, ships = _CATALOG[i]
            price = from_usd(Decimal(usd), currency)
            quantity = self.rng.choices((1, 2, 3), weights=(75, 20, 5), k=1)[0]
            items.append(Item(sku, title, quantity, price, grams, ships))
        return items

    def instant(self, start: datetime, end: datetime) -> datetime:
        """A uniformly random aware UTC instant in [start, end), whole seconds (as most APIs report)."""
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("DataGen.instant needs aware datetimes")
        span = int((end - start).total_seconds())
        offset = self.rng.randrange(span) if span > 0 else 0
        return (start + timedelta(seconds=offset)).astimezone(UTC).replace(microsecond=0)


_FOLD = str.maketrans(
    {"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ł": "l", "Ł": "L", "'": ""}
)


def _ascii_fold(text: str) -> str:
    """Best-effort ASCII e-mail local part from a name (non-Latin scripts fall back to 'customer')."""
    folded = unicodedata.normalize("NFKD", text.translate(_FOLD)).encode("ascii", "ignore").decode()
    folded = "".join(ch for ch in folded if ch.isalnum() or ch == ".").strip(".")
    return folded or "customer"
