"""Settings from CROSSDOCK_* environment variables or a TOML file (CROSSDOCK_CONFIG); secrets never logged."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from pydantic import Field, IPvAnyNetwork, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from crossdock.security.oauth import OAuthApp


class Settings(BaseSettings):
    """Every default lives here. See README.md, 'Configuration', for the list with explanations."""

    model_config = SettingsConfigDict(env_prefix="CROSSDOCK_", extra="ignore")

    home: Path = Field(
        default=Path("./var"), description="Directory for the SQLite database, key file and blobs."
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; default sqlite+aiosqlite under home."
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Vault key(s), urlsafe base64 of 32 bytes, comma separated, primary first; "
        "default: a key file generated in home.",
    )
    blob_dir: Path | None = Field(
        default=None, description="Where label and document files go; default home/blobs."
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000", description="How remotes and browsers reach this hub."
    )
    max_body_bytes: int = Field(
        default=2 * 1024 * 1024, description="Largest request body accepted (413 beyond)."
    )
    allow_private_urls: bool = Field(
        default=False, description="Allow outbound calls to private/loopback ranges."
    )
    log_level: str = Field(default="INFO")
    log_format: str = Field(default="console", description="'console' or 'json'.")
    db_pool_size: int = Field(default=10)
    sql_echo: bool = Field(default=False)
    # Engine: inbox and workers (see README.md, 'Configuration').
    inbox_retention_days: float = Field(
        default=30, gt=0, description="Days raw inbound payloads are kept for replay before the purge job."
    )
    worker_concurrency: int = Field(default=4, ge=1, description="Jobs one worker process runs at once.")
    worker_lease_s: float = Field(
        default=30, gt=0, description="A running job whose worker sent no heartbeat this long is run again."
    )
    worker_heartbeat_s: float = Field(
        default=5, gt=0, description="How often a worker renews its jobs' lease."
    )
    worker_poll_s: float = Field(
        default=1.0, gt=0, description="How often an idle worker looks for due jobs."
    )
    worker_grace_s: float = Field(
        default=30,
        ge=0,
        description="On shutdown, how long running jobs may take to finish before they stop.",
    )
    myparcelcom_allowed_networks: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="Where MyParcel.com's platform calls from: when set, the integration contract's shipment "
        "listing and status callback answer 403 to any other client address.",
    )
    job_modules: list[str] = Field(
        default_factory=list, description="Extra Python modules that register job kinds, imported by workers."
    )
    # Engine: records of outbound traffic (remote calls, webhook deliveries).
    remote_calls_retention_days: float = Field(
        default=14, gt=0, description="Days each remote API call's record (remote_calls) is kept."
    )
    webhook_deliveries_retention_days: float = Field(
        default=30, gt=0, description="Days a finished outbound webhook delivery and its attempts are kept."
    )
    # Channels: scheduled order pulls (see README.md, 'Configuration').
    sync_schedule: bool = Field(
        default=True, description="Pull every active channel connection's orders on schedule."
    )
    sync_interval_s: float = Field(
        default=300, gt=0, description="How often each channel connection's orders are pulled on schedule."
    )
    sync_lookback_s: float = Field(
        default=600,
        ge=0,
        description="How far before the last pull's end the next one starts again, for late remote commits.",
    )
    sync_backfill_days: float = Field(
        default=60, gt=0, description="How far back the first pull of a new connection reads orders."
    )
    # Shipping: tracking asked of connections whose remote sends no webhooks (engine/tracking_poll.py).
    tracking_poll_interval_s: float = Field(
        default=14400,
        gt=0,
        description="How often each open shipment of a polled connection (carriers, MyParcel.com) is tracked.",
    )
    # OAuth: one app per connector that connects with an authorisation flow (see security/oauth.py, OAuthApp).
    oauth_apps: dict[str, OAuthApp] = Field(
        default_factory=dict,
        description="OAuth apps by connector name (shopify, ebay, amazon): client_id, client_secret, scopes, "
        "redirect_base and, for sandboxes and regions, authorize_url, token_url, api_base_url. "
        'Environment: CROSSDOCK_OAUTH_APPS=\'{"shopify": {"client_id": "...", "client_secret": "..."}}\'; '
        "TOML: [oauth_apps.shopify].",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("CROSSDOCK_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.home / 'crossdock.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def resolved_blob_dir(self) -> Path:
        return self.blob_dir or self.home / "blobs"

    def ensure_home(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)


def get_settings() -> Settings:
    return Settings()
