"""One typed settings object, built once at start-up and passed down.

Sources, highest priority first: keyword arguments, ``SOCIALCARE_*`` environment variables, an
optional TOML file (``SOCIALCARE_CONFIG`` or ``load_settings(config=...)``), then the defaults,
which are the embedded mode: a SQLite file under ``./var/`` and the in-process bus. Secrets are
accepted only from the environment (or keyword arguments in tests), never from the TOML file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

StrList = Annotated[list[str], NoDecode]

SECRET_FIELDS = frozenset(
    {
        "secret_key",
        "x_bearer_token",
        "x_api_key",
        "x_api_secret",
        "x_access_token",
        "x_access_secret",
        "reddit_client_secret",
        "reddit_password",
        "discourse_api_key",
        "discourse_webhook_secret",
        "webhook_secret",
        "smtp_password",
    }
)


class _SecretlessToml(TomlConfigSettingsSource):
    """The TOML source, refusing secrets: they belong in the environment only."""

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        leaked = sorted(SECRET_FIELDS & set(data))
        if leaked:
            raise ValueError(f"secrets may only come from the environment, not the TOML file: {leaked}")
        return data


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SOCIALCARE_", extra="ignore", toml_file=None)

    # --- storage and bus -------------------------------------------------------------------
    var_dir: Path = Path("./var")
    database_url: str = ""  # empty: sqlite+aiosqlite:///<var_dir>/socialcare.db
    bus: Literal["inprocess", "redis"] = "inprocess"
    redis_url: str = "redis://127.0.0.1:6379/0"
    bus_prefix: str = "socialcare"
    bus_max_deliveries: int = Field(5, ge=1)
    bus_claim_idle_ms: int = Field(30_000, ge=100)
    bus_batch_size: int = Field(200, ge=1)
    bus_block_ms: int = Field(1_000, ge=1)
    bus_linger_ms: int = Field(20, ge=0)  # a short batch waits this long for more before it is handled
    # the watchdog: a stage still handling a batch (or one message) after this long is cancelled and
    # the batch retried one by one, so a message that hangs is dead-lettered after its attempts
    stage_timeout_seconds: float = Field(300.0, gt=0)
    # a stage worker's own /healthz, /readyz and /metrics (unauthenticated: bind a private address)
    worker_metrics_port: int | None = Field(None, ge=0, le=65535)  # None: no server; 0: any free port
    worker_metrics_host: str = "127.0.0.1"
    # embedded mode: on SIGTERM, how long the stages may take to drain the in-memory queues
    shutdown_drain_seconds: float = Field(30.0, ge=0)
    # on SIGTERM, how long a stage worker may take to finish the batch in hand before it is cancelled:
    # under the orchestrator's grace period (docker compose: 10 s by default) so the process exits on
    # its own. The act stage starts no new send once asked to stop (the rest are redelivered), and
    # the platform call under way is always let finish, whatever this says.
    shutdown_batch_seconds: float = Field(8.0, ge=0)
    # a reply or platform action claimed (``sending``) this long ago whose sender never recorded what
    # the platform did (killed mid-call): a reply is marked ``unknown`` for a person to check, a
    # platform action (idempotent) performed again, up to its third interruption; far longer than
    # any platform call (X gives up after 40 s), so a send under way is never taken for a lost one
    stranded_send_minutes: float = Field(10.0, ge=1)

    # --- web --------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8080
    public_base_url: str = "http://127.0.0.1:8080"
    secret_key: SecretStr | None = None
    cookie_secure: bool = True
    log_level: str = "INFO"
    log_json: bool = False

    # --- pipeline ---------------------------------------------------------------------------
    demo: bool = True  # `socialcare run` streams the bundled demo data when no connector is set
    demo_speed: float = 0.0  # 0: as fast as possible; otherwise a factor of real time
    triage_mode: Literal["transformer", "cascade"] = "cascade"
    triage_batch_size: int = Field(32, ge=1)
    triage_max_wait_ms: int = Field(5, ge=0)
    triage_cache_size: int = Field(50_000, ge=0)
    triage_model_dir: Path | None = None  # custom heads (for example a brand's issue taxonomy)
    # the encoder: int8 ONNX Runtime (exported locally once, ~3 x faster per text) or torch fp32
    encoder_backend: Literal["onnx-int8", "torch"] = "onnx-int8"
    model_cache_dir: Path | None = None  # where the int8 export is kept; None: ~/.cache/socialcare/models
    dry_run: bool = True  # record replies instead of sending them
    auto_answer_threshold: float = Field(0.55, ge=0, le=1)

    # --- X (API v2, through tweepy) -----------------------------------------------------------
    x_bearer_token: SecretStr | None = None
    x_user_id: str | None = None
    x_api_key: SecretStr | None = None
    x_api_secret: SecretStr | None = None
    x_access_token: SecretStr | None = None
    x_access_secret: SecretStr | None = None
    x_stream_rules: StrList = []
    x_api_base: str = "https://api.twitter.com"
    # X sends deletions only in Enterprise compliance streams: tweets already ingested are looked up
    # again (GET /2/tweets?ids=, 100 a request) this often, this far back, at most this many (0: off);
    # each tweet found counts against the tier's monthly post cap
    x_recheck_seconds: float = Field(900.0, gt=0)
    x_recheck_hours: float = Field(24.0, ge=0)
    x_recheck_max: int = Field(300, ge=0)
    # where the team reads the console (ISO 3166-1 alpha-2 codes, JSON or comma-separated): X's terms
    # forbid showing what it withholds there, so a tweet withheld in one of them (or, anywhere, for
    # copyright) is hidden until X stops withholding it
    x_withheld_countries: StrList = []
    # older tweets (first seen before the re-check window) go to X's batch compliance endpoints this
    # often (0: off; needs the bearer token), at most this many a job, the job asked about this often
    x_compliance_hours: float = Field(24.0, ge=0)
    x_compliance_max: int = Field(100_000, ge=1)
    x_compliance_poll_seconds: float = Field(300.0, gt=0)

    # --- Reddit (through praw) --------------------------------------------------------------
    reddit_client_id: str | None = None
    reddit_client_secret: SecretStr | None = None
    reddit_user_agent: str = "socialcare/0.1 (by u/socialcare)"
    reddit_username: str | None = None
    reddit_password: SecretStr | None = None
    reddit_subreddits: StrList = []
    reddit_keywords: StrList = []
    reddit_oauth_url: str = "https://oauth.reddit.com"
    reddit_url: str = "https://www.reddit.com"
    reddit_short_url: str = "https://redd.it"
    # posts already seen are read again for edits and deletions: this often, this far back, at most this many
    reddit_recheck_seconds: float = Field(300.0, gt=0)
    reddit_recheck_hours: float = Field(24.0, ge=0)
    reddit_recheck_max: int = Field(300, ge=0)

    # --- Discourse and generic webhooks ------------------------------------------------------
    discourse_url: str | None = None
    discourse_api_key: SecretStr | None = None
    discourse_api_username: str | None = None
    discourse_webhook_secret: SecretStr | None = None
    # posts already seen are re-read (mostly from the same /posts.json pages) for edits, deletions and
    # recoveries missed while the webhook was down: this often, this far back, at most this many
    discourse_recheck_seconds: float = Field(300.0, gt=0)
    discourse_recheck_hours: float = Field(24.0, ge=0)
    discourse_recheck_max: int = Field(200, ge=0)
    webhook_secret: SecretStr | None = None
    webhook_max_bytes: int = 1_000_000
    webhook_publish_timeout_seconds: float = Field(10.0, gt=0)  # then 503 + Retry-After, under senders' timeouts

    # --- e-mail, escalation -------------------------------------------------------------------
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "care@socialcare.invalid"
    secure_link_ttl_hours: float = 24.0

    # --- escalation: private cases, verification, SLA (owned by escalation/) -----------------
    smtp_starttls: bool | None = None  # None: STARTTLS when the server offers it
    smtp_timeout_seconds: float = Field(10.0, gt=0)
    secure_session_hours: float = Field(4.0, gt=0)  # a verified customer session's lifetime
    verify_code_ttl_minutes: float = Field(10.0, gt=0)
    verify_max_attempts: int = Field(5, ge=1)  # wrong codes before a lock-out
    verify_lockout_minutes: float = Field(15.0, gt=0)
    verify_max_lockouts: int = Field(3, ge=1)  # then the session ends; an agent issues a new link
    verify_max_code_sends: int = Field(5, ge=1)  # codes one customer session may request
    secure_rate_per_ip_per_minute: int = Field(60, ge=1)  # requests to /secure/* per client address
    secure_rate_per_case_per_minute: int = Field(30, ge=1)  # code requests and chat messages per case
    sla_first_response_minutes: float = Field(60.0, gt=0)
    sla_resolution_hours: float = Field(24.0, gt=0)
    sla_check_interval_seconds: float = Field(60.0, gt=0)

    # --- community: reply bots, incidents, moderation (owned by community/) ------------------
    # The reply bot's defaults per channel; ``bot_channels`` overrides them per platform, e.g.
    # SOCIALCARE_BOT_CHANNELS='{"x": {"threshold": 0.7, "rate_per_hour": 60, "dry_run": true}}'
    # (keys: enabled, threshold, rate_per_hour, cooldown_hours, dry_run, tone).
    bot_enabled: bool = True
    bot_threshold: float | None = Field(None, ge=0, le=1)  # None: auto_answer_threshold
    bot_rate_per_hour: int = Field(300, ge=0)  # automatic public replies per channel per hour
    bot_cooldown_hours: float = Field(24.0, ge=0)  # an author auto-answered is not auto-answered again
    bot_dry_run_channels: StrList = []  # channels whose bot only records what it would have sent
    bot_channels: dict[str, dict[str, Any]] = {}
    community_channels: StrList = ["reddit", "discourse"]  # low-volume: the community answers first
    incident_window_minutes: float = Field(30.0, gt=0)
    incident_min_count: int = Field(8, ge=1)
    incident_factor: float = Field(4.0, gt=1)
    incident_baseline_windows: int = Field(12, ge=1)
    incident_history_days: int = Field(7, ge=0)  # same window on previous days: the daily rhythm
    incident_quiet_minutes: float = Field(60.0, gt=0)  # no report for this long: an incident collects no more
    incident_report_confidence: float = Field(0.25, ge=0, le=1)  # issue-type confidence a report needs
    incident_rising_count: int = Field(3, ge=1)  # outage reports in a window (2x usual): no "no wider problem" checks
    incident_status_interval_minutes: float = Field(30.0, ge=0)  # per author, between status replies
    incident_broadcast_per_minute: int = Field(60, ge=1)  # status replies per channel per minute; the rest wait
    moderation_rules_path: Path | None = None  # None: the bundled service/demo/moderation_rules.yaml

    # --- privacy (service/privacy.py) ----------------------------------------------------------
    retention_days: int | None = Field(None, ge=1)  # None: keep everything; else a daily purge of older content

    @field_validator("x_stream_rules", "reddit_subreddits", "reddit_keywords", "bot_dry_run_channels",
                     "community_channels", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        """Lists come from the environment as JSON (``["a","b"]``) or comma-separated text."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("x_withheld_countries", mode="before")
    @classmethod
    def _countries(cls, value: Any) -> Any:
        """Country codes as X writes them (``de`` -> ``DE``), from JSON or comma-separated text."""
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else [p for p in text.split(",") if p.strip()]
        if not isinstance(value, list):
            return value
        codes = [str(code).strip().upper() for code in value]
        wrong = [code for code in codes if len(code) != 2 or not code.isascii() or not code.isalpha()]
        if wrong:
            raise ValueError(f"not two-letter country codes (ISO 3166-1 alpha-2): {wrong}")
        return codes

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
        toml_path = _CONFIG_PATH.get("path")
        if toml_path:
            sources.append(_SecretlessToml(settings_cls, toml_file=toml_path))
        return tuple(sources)

    # --- derived values -----------------------------------------------------------------------
    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.var_dir / 'socialcare.db').resolve()}"

    @property
    def x_enabled(self) -> bool:
        return bool(self.x_bearer_token and self.x_user_id) or bool(
            self.x_api_key and self.x_api_secret and self.x_access_token and self.x_access_secret
        )

    @property
    def reddit_enabled(self) -> bool:
        return bool(self.reddit_client_id and self.reddit_client_secret)

    @property
    def discourse_enabled(self) -> bool:
        return bool(self.discourse_url and self.discourse_api_key and self.discourse_api_username)

    def secret(self, name: str) -> str | None:
        """The plain value of a secret setting, or None."""
        value = getattr(self, name)
        return value.get_secret_value() if value is not None else None


_CONFIG_PATH: dict[str, str | None] = {"path": None}


def load_settings(config: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Build the settings once, at start-up. ``config`` (or ``SOCIALCARE_CONFIG``) names a TOML file."""
    path = config if config is not None else os.environ.get("SOCIALCARE_CONFIG")
    if path is not None and not Path(path).is_file():
        raise FileNotFoundError(f"settings file not found: {path}")
    _CONFIG_PATH["path"] = str(path) if path else None
    try:
        return Settings(**overrides)
    finally:
        _CONFIG_PATH["path"] = None
