"""Carriers through karrio: UPS, FedEx, USPS and every other carrier karrio supports (docs/carriers.md)."""
