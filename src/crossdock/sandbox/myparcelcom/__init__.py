"""MyParcel.com sandbox: a local emulator of the MyParcel.com API (auth server client credentials, JSON:API
shipments with statuses, files and idempotency keys) and, in `platform`, a simulator of the MyParcel.com
platform that pulls from an integration following the integration contract (PROTOCOLS.md section 9)."""

from crossdock.sandbox.myparcelcom.app import create_app
from crossdock.sandbox.myparcelcom.state import MyParcelComState

__all__ = ["MyParcelComState", "create_app"]
