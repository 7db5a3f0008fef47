"""Canonical carrier names, as channel connectors look them up in their own carrier-code tables.

Shipping connectors report carriers in many spellings ("UPS", "ups", "DHL Express", "dhl_express", "Royal
Mail"). `carrier_key` folds a name to one key (lower case, letters and digits only) and resolves a few known
aliases, so each channel keeps one small table from key to the code its API wants. The keys follow karrio's
carrier names with the separators removed (karrioapi/karrio: modules/connectors/*), e.g. "dhlexpress".
"""

from __future__ import annotations

import re
import unicodedata

_NOT_ALNUM = re.compile(r"[^0-9a-z]")

# Other spellings of the same carrier -> key.
ALIASES: dict[str, str] = {
    "unitedparcelservice": "ups",
    "unitedstatespostalservice": "usps",
    "federalexpress": "fedex",
    # Hermes UK became Evri in 2022 (Shippo still calls its tracking token hermes_uk).
    "hermesuk": "evri",
    "deutschepostdhl": "deutschepost",
    "canpost": "canadapost",
    "auspost": "australiapost",
}


def carrier_key(name: str) -> str:
    """The lookup key of a carrier name: "Royal Mail", "royal_mail" and "RoyalMail" all give "royalmail"."""
    folded = unicodedata.normalize("NFKD", name).casefold()
    key = _NOT_ALNUM.sub("", folded)
    return ALIASES.get(key, key)
