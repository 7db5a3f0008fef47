"""The Shippo connector: rates, labels (transactions), refunds and tracking through api.goshippo.com."""
