"""One typed settings object, read from `TOPUP_*` environment variables at start-up."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args, get_origin

import msgspec

from topup.tiers import DEFAULT_TIER, Tier

ENV_PREFIX = "TOPUP_"

PostgresUrl = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^postgres(ql)?://",
        description="a postgresql:// URL",
    ),
]
Positive = Annotated[int, msgspec.Meta(gt=0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]


class Settings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Everything configurable, with the defaults that run on a laptop.

    Each field `name` is read from the variable `TOPUP_NAME`; the README lists them all.
    """

    # -- stores
    database_url: PostgresUrl | None = None
    """PostgreSQL to use; unset starts an embedded server in `data_dir`."""
    database_secret_arn: str | None = None
    """In AWS: the Secrets Manager secret (RDS JSON: host, port, username, password, dbname) the
    database URL is built from at start-up, instead of TOPUP_DATABASE_URL."""
    database_ca_file: str | None = None
    """With TOPUP_DATABASE_SECRET_ARN: the CA bundle the server's certificate must chain to. The
    URL then demands TLS and checks the certificate and host name (`sslmode=verify-full`): in
    AWS the functions reach Aurora over the internet (infra/README.md, `network`)."""
    data_dir: str = ".topup"
    """Local state: embedded database, firehose spool, archive warehouse, dev.json."""
    database_pool_size: Positive = 10
    database_idle_session_s: PositiveFloat | None = None
    """The server ends a pooled session idle this long (`idle_session_timeout`): in Lambda a frozen
    container's connections would otherwise keep Aurora from pausing. A container idle half as
    long drops its pooled connections before its next request, as it cannot notice the close."""
    database_connect_timeout_s: PositiveFloat = 10.0
    """How long a connection may take. In AWS longer than Aurora's resume from a pause (~15 s,
    ~30 s after a day paused): it holds new connections until it runs again."""
    retention_days: Positive = 35
    """Days of events kept in Postgres; older day partitions are dropped by `topup maintain`."""
    recent_window_days: Positive = 30
    """Ranges inside this many days are answered from Postgres, the rest from the archive."""

    # -- sites
    default_tier: Tier = DEFAULT_TIER
    default_allowance: Annotated[int, msgspec.Meta(ge=0)] = 1_000_000
    """Events a new site may record before it needs a top-up."""

    # -- buffer between ingest and process
    sink: Literal["local", "firehose"] = "local"
    """`local`: the on-disk local firehose; `firehose`: Kinesis Data Firehose."""
    firehose_stream: str = "topup-ingest"
    firehose_access_key: str | None = None
    """Shared secret Firehose sends to process; `topup dev` generates one when unset."""
    firehose_access_key_secret_arn: str | None = None
    """In AWS: the secret (`{"api_key": …}`, as Firehose reads it) holding that key."""
    process_url: str | None = None
    """Where the local firehose delivers; `topup dev` points it at its own router."""
    buffer_gzip: bool = False
    """Local firehose: gzip delivery bodies (`Content-Encoding: gzip`), as Firehose can."""
    buffer_max_bytes: Positive = 1024 * 1024
    buffer_max_seconds: PositiveFloat = 1.0
    trusted_proxies: list[str] = []
    """CIDRs whose `X-Forwarded-For` is believed (the client IP is the first hop)."""
    trust_cloudfront_headers: bool = False
    """Believe CloudFront's viewer address and geo headers (only behind CloudFront, as in AWS)."""
    origin_secret: str | None = None
    """With trust_cloudfront_headers: believe them only on requests carrying this value in
    `X-Topup-Origin` (CloudFront adds it), so a request sent to the function URL directly
    cannot forge a viewer address or country."""

    # -- archive
    archive: Literal["local", "firehose", "glue"] = "local"
    """`local`: Iceberg tables under the data folder; `firehose`: the archive delivery streams;
    `glue`: process appends to the Glue Iceberg tables itself (no Firehose record per row)."""
    archive_events_stream: str = "topup-archive-events"
    archive_initial_events_stream: str = "topup-archive-initial-events"
    athena_workgroup: str = "topup"
    """Athena workgroup for archive queries (it caps the bytes a query may scan)."""
    athena_database: str = "topup"
    """Glue database holding the archive's Iceberg tables (Athena reads them; with
    `archive = "glue"` process writes them)."""

    geoip_database: str | None = None
    """A MaxMind GeoLite2/GeoIP2 .mmdb for city-level geo without CloudFront (else country only)."""

    # -- query service
    public_url: str | None = None
    """The URL visitors' browsers reach the tracker at (snippets); unset: the request's own."""
    dashboard_origin: str | None = None
    """The origin allowed to call the management API from a browser (CORS); unset: same origin."""
    oidc_issuer: str | None = None
    """OIDC issuer whose tokens the query API accepts (Cognito: https://cognito-idp.…/POOL_ID)."""
    oidc_audience: str | None = None
    """The app client id tokens must be issued to."""
    oidc_jwks_url: str | None = None
    """The issuer's JWKS (Cognito: <issuer>/.well-known/jwks.json)."""
    oidc_login_url: str | None = None
    """The hosted login's base URL, whose /oauth2/authorize and /oauth2/token the dashboard uses
    (Cognito: https://DOMAIN.auth.REGION.amazoncognito.com); unset: API-key sign-in only."""

    # -- AWS
    aws_region: str = "us-east-1"
    aws_endpoint_url: str | None = None
    """Endpoint override for every AWS client (tests point it at moto's server)."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def __post_init__(self) -> None:
        if self.retention_days <= self.recent_window_days:
            raise ValueError(
                f"{env_name('retention_days')} ({self.retention_days}) must be greater than "
                f"{env_name('recent_window_days')} ({self.recent_window_days}): "
                "Postgres must hold every day the recent window reads"
            )


class SettingsError(ValueError):
    """A `TOPUP_*` variable is missing, malformed or out of range; the message names it."""


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _is_list(annotation: Any) -> bool:
    return get_origin(annotation) is list or any(
        get_origin(a) is list for a in get_args(annotation)
    )


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read `TOPUP_*` from the environment (lists are comma-separated), then apply overrides."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    for field in msgspec.structs.fields(Settings):
        value = environ.get(env_name(field.name))
        if value is None or value == "":
            continue
        raw[field.name] = (
            [item.strip() for item in value.split(",") if item.strip()]
            if _is_list(field.type)
            else value
        )
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(_explain(str(exc), raw)) from None


def _explain(message: str, raw: Mapping[str, Any]) -> str:
    """Rewrite msgspec's `... - at `$.field`` into `TOPUP_FIELD: ... (got 'value')`."""
    match = re.search(r" - at `\$\.(\w+)", message)
    if match is None:
        return message
    field = match.group(1)
    reason = message[: match.start()]
    if field == "database_url":
        reason = "must be a postgresql:// URL"
    elif field == "default_tier":
        reason = "unknown tier, expected one of: " + ", ".join(t.value for t in Tier)
    got = raw.get(field)
    shown = redact_url(got) if field == "database_url" and isinstance(got, str) else got
    return f"{env_name(field)}: {reason} (got {shown!r})"


def redact_url(url: str) -> str:
    """The URL with its password replaced, for messages and logs."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)
