"""Credential vault, API tokens, OAuth 2.0 flows and signature checks."""
