"""MyParcel.com API: shipments with labels from the carriers MyParcel.com contracts, voids and status polling."""
