"""Amazon Selling Partner API sandbox: Login with Amazon tokens and the Orders API v0."""

from crossdock.sandbox.amazon.app import create_app
from crossdock.sandbox.amazon.state import AmazonState

__all__ = ["AmazonState", "create_app"]
