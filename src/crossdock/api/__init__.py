"""FastAPI app: REST /api/v1, inbound hooks, OAuth callbacks, integration contracts."""
