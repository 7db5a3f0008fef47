"""Connectors: one package per external system; base.py holds the capability protocols."""
