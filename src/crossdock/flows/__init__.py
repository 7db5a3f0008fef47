"""Fulfilment flows: shipping rules, parcels, and the way from a paid order to its label and tracking."""
