"""crossdock: a self-hosted integration hub for e-commerce order fulfilment."""

__version__ = "0.1.0"
