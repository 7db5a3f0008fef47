"""The canonical model. Connectors map to and from it; nothing else sees external shapes.

This package imports nothing else of crossdock.
"""

from crossdock.model.address import Address, check_country, normalise_phone
from crossdock.model.catalog import Category, Product, StockLevel, Variant
from crossdock.model.money import Money, MoneyError, minor_units
from crossdock.model.order import (
    TERMINAL,
    TRANSITIONS,
    Customer,
    IllegalTransition,
    Order,
    OrderLine,
    OrderStatus,
    Totals,
    can_transition,
    check_transition,
    path_to,
)
from crossdock.model.shipping import (
    Fulfillment,
    FulfillmentLine,
    Label,
    LabelFormat,
    Parcel,
    Rate,
    Shipment,
    ShipmentStatus,
    TrackingEvent,
    TrackingStatus,
)
from crossdock.model.units import Dimensions, Length, LengthUnit, Weight, WeightUnit

__all__ = [
    "TERMINAL",
    "TRANSITIONS",
    "Address",
    "Category",
    "Customer",
    "Dimensions",
    "Fulfillment",
    "FulfillmentLine",
    "IllegalTransition",
    "Label",
    "LabelFormat",
    "Length",
    "LengthUnit",
    "Money",
    "MoneyError",
    "Order",
    "OrderLine",
    "OrderStatus",
    "Parcel",
    "Product",
    "Rate",
    "Shipment",
    "ShipmentStatus",
    "StockLevel",
    "Totals",
    "TrackingEvent",
    "TrackingStatus",
    "Variant",
    "Weight",
    "WeightUnit",
    "can_transition",
    "check_country",
    "check_transition",
    "minor_units",
    "normalise_phone",
    "path_to",
]
