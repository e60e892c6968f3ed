"""The `topup` command: run the local stack, migrate, and manage accounts, sites and keys."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import click
import msgspec

from topup import accounts, sites
from topup.settings import Settings, SettingsError, load_settings
from topup.tiers import Tier, UnknownTierError, parse_tier

T = TypeVar("T")

# Errors that are the caller's to fix: one line on stderr, and this exit status.
USAGE_EXIT = 2
NOT_FOUND_EXIT = 1


def fail(message: str, status: int = USAGE_EXIT) -> NoReturn:
    click.echo(f"topup: {message}", err=True)
    sys.exit(status)


def _exit_on_signal(signum: int, frame: Any) -> NoReturn:
    # SystemExit unwinds through `finally`, which is where the embedded database is stopped.
    raise SystemExit(128 + signum)


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


def with_database(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run `work(conn)` against the configured database (starting the embedded one if needed)."""
    from topup.database import connect
    from topup.local.embedded_postgres import database

    async def run(url: str) -> T:
        conn = await connect(url)
        try:
            return await work(conn)
        finally:
            await conn.close()

    with database(settings) as ready:
        assert ready.database_url is not None
        return asyncio.run(run(ready.database_url))


def emit(value: Any, as_json: bool, human: Callable[[Any], str]) -> None:
    if as_json:
        click.echo(msgspec.json.encode(value).decode())
    else:
        click.echo(human(value))


def _uuid(kind: str) -> Callable[[click.Context, click.Parameter, str | None], uuid.UUID | None]:
    def convert(ctx: click.Context, param: click.Parameter, value: str | None) -> uuid.UUID | None:
        if value is None:
            return None
        try:
            return uuid.UUID(value)
        except ValueError:
            raise click.BadParameter(f"not a {kind} id: {value!r}") from None

    return convert


def _tier(ctx: click.Context, param: click.Parameter, value: str | None) -> Tier | None:
    return None if value is None else parse_tier(value)


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


class TopupGroup(click.Group):
    """Turns the errors a user can fix into one clear line and a non-zero exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        from topup.database import DatabaseUnavailableError, MigrationChangedError
        from topup.telemetry import TelemetryConfigError

        try:
            return super().invoke(ctx)
        except (
            SettingsError,
            UnknownTierError,
            sites.InvalidSiteError,
            TelemetryConfigError,
        ) as exc:
            fail(str(exc))
        except DatabaseUnavailableError as exc:
            fail(f"{exc} (check TOPUP_DATABASE_URL)")
        except MigrationChangedError as exc:
            fail(str(exc))
        except accounts.NotFoundError as exc:
            fail(str(exc), NOT_FOUND_EXIT)


@click.group(cls=TopupGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx: click.Context) -> None:
    """TopUp Analytics: cookieless web analytics with privacy tiers.

    Configured by TOPUP_* environment variables (see the README). Without TOPUP_DATABASE_URL,
    commands use an embedded PostgreSQL in the data folder (TOPUP_DATA_DIR, default .topup).
    """
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_on_signal)
    try:
        ctx.obj = load_settings()
    except SettingsError as exc:
        fail(str(exc))
    logging.basicConfig(
        level=ctx.obj.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for chatty in ("httpx", "pgserver"):  # a line per local delivery, per database handle
        logging.getLogger(chatty).setLevel(logging.WARNING)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--data-dir", type=click.Path(file_okay=False), help="Overrides TOPUP_DATA_DIR.")
@click.pass_context
def dev(ctx: click.Context, host: str, port: int, data_dir: str | None) -> None:
    """Run the whole pipeline locally and print the dashboard URL, an API key and the snippet."""
    from topup.local import devstack

    settings = _settings(ctx)
    if data_dir is not None:
        settings = msgspec.structs.replace(settings, data_dir=data_dir)
    devstack.run(settings, host=host, port=port, echo=click.echo)


@main.command()
@json_option
@click.pass_context
def migrate(ctx: click.Context, as_json: bool) -> None:
    """Apply the schema migrations not yet applied (safe to run twice or concurrently)."""
    from topup.database import migrate as apply

    done = with_database(_settings(ctx), apply)
    names = [f"{m.version:04d}_{m.name}" for m in done]
    emit(
        {"applied": names},
        as_json,
        lambda _: "\n".join(f"applied {n}" for n in names) or "schema is up to date",
    )


@main.command()
@json_option
@click.pass_context
def maintain(ctx: click.Context, as_json: bool) -> None:
    """Create upcoming day partitions, drop expired ones, rotate and delete visitor-hash salts,
    build the closed days' visit totals and today's and yesterday's counts so far, compact the
    local archive's closed days."""
    from topup.maintenance import local_archive
    from topup.maintenance import maintain as run

    settings = _settings(ctx)
    archive = local_archive(settings)
    report = with_database(
        settings,
        lambda conn: run(conn, retention_days=settings.retention_days, archive=archive),
    )

    def human(r: Any) -> str:
        text = (
            f"partitions created: {r.partitions_created}, dropped: {len(r.partitions_dropped)}; "
            f"salts created: {r.salts_created}, deleted: {r.salts_deleted}; "
            f"visit days built: {r.visit_days_built}, local days: {r.local_days_built}, "
            f"open days counted: {r.open_days_built}"
        )
        if r.archive is not None:
            text += (
                f"; archive: {r.archive.days_compacted} days compacted, "
                f"files {r.archive.files_before} → {r.archive.files_after}"
            )
        return text

    emit(report, as_json, human)


@main.command()
@click.option("--events-per-month", type=click.IntRange(min=1), required=True)
@click.option(
    "--results",
    type=click.Path(dir_okay=False),
    default="loadtest/results/latest.json",
    show_default=True,
    help="Measured inputs, from `make bench`.",
)
@click.option(
    "--views-per-month",
    type=click.IntRange(min=0),
    default=300,
    show_default=True,
    help="Dashboard overviews of the last 30 days (answered by Postgres).",
)
@click.option(
    "--archive-views-per-month",
    type=click.IntRange(min=0),
    default=30,
    show_default=True,
    help="Dashboard overviews of older ranges (answered by Athena).",
)
@json_option
def cost(
    events_per_month: int,
    results: str,
    views_per_month: int,
    archive_views_per_month: int,
    as_json: bool,
) -> None:
    """What a month of traffic costs on AWS, per million events, itemised by service."""
    from pathlib import Path

    from topup import cost_model

    found = cost_model.report(
        events_per_month,
        cost_model.load_inputs(Path(results)),
        cost_model.load_prices(),
        cost_model.Usage(views=views_per_month, archive_views=archive_views_per_month),
    )
    emit(found, as_json, cost_model.render)


@main.group()
def account() -> None:
    """Accounts own sites and API keys."""


@account.command("create")
@click.option("--name", required=True, help="A name you will recognise.")
@click.option("--operator", is_flag=True, help="May top up any site's allowance.")
@json_option
@click.pass_context
def account_create(ctx: click.Context, name: str, operator: bool, as_json: bool) -> None:
    """Create an account."""
    created = with_database(
        _settings(ctx), lambda conn: accounts.create_account(conn, name, is_operator=operator)
    )
    emit(created, as_json, lambda a: f"account {a.id} ({a.name})")


@account.command("list")
@json_option
@click.pass_context
def account_list(ctx: click.Context, as_json: bool) -> None:
    """List accounts."""
    found = with_database(_settings(ctx), accounts.list_accounts)
    emit(found, as_json, lambda rows: "\n".join(f"{a.id}  {a.name}" for a in rows) or "no accounts")


@main.group()
def site() -> None:
    """Sites: domains, privacy tier, allowance."""


def _site_line(s: sites.Site) -> str:
    fields = "" if s.allowed_fields is None else f"  fields={','.join(s.allowed_fields)}"
    return (
        f"{s.id}  {s.name}  domains={','.join(s.domains)}  tier={s.tier.value}  tz={s.timezone}  "
        f"allowance={s.allowance_remaining}{fields}"
    )


def _fields(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [f.strip() for f in value.split(",") if f.strip()]


@site.command("create")
@click.option("--account", "account_id", required=True, callback=_uuid("account"))
@click.option("--name", required=True)
@click.option("--domain", "domains", multiple=True, required=True, help="Repeat for more domains.")
@click.option("--tier", callback=_tier, help="banner_free (default), privacy_policy or full.")
@click.option("--timezone", default="UTC", show_default=True, help="IANA name, e.g. Europe/Berlin.")
@click.option("--allowance", type=click.IntRange(min=0), help="Events it may record.")
@click.option("--allowed-fields", callback=_fields, help="Comma-separated, narrows the tier.")
@json_option
@click.pass_context
def site_create(
    ctx: click.Context,
    account_id: uuid.UUID,
    name: str,
    domains: tuple[str, ...],
    tier: Tier | None,
    timezone: str,
    allowance: int | None,
    allowed_fields: list[str] | None,
    as_json: bool,
) -> None:
    """Create a site."""
    settings = _settings(ctx)
    created = with_database(
        settings,
        lambda conn: sites.create_site(
            conn,
            account_id,
            name=name,
            domains=list(domains),
            tier=tier or settings.default_tier,
            timezone=timezone,
            allowance=settings.default_allowance if allowance is None else allowance,
            allowed_fields=allowed_fields,
        ),
    )
    emit(created, as_json, _site_line)


@site.command("list")
@click.option("--account", "account_id", callback=_uuid("account"), help="Only this account's.")
@json_option
@click.pass_context
def site_list(ctx: click.Context, account_id: uuid.UUID | None, as_json: bool) -> None:
    """List sites."""
    found = with_database(_settings(ctx), lambda conn: sites.list_sites(conn, account_id))
    emit(found, as_json, lambda rows: "\n".join(map(_site_line, rows)) or "no sites")


@site.command("update")
@click.argument("site_id", callback=_uuid("site"))
@click.option("--name")
@click.option("--domain", "domains", multiple=True, help="Replaces the domains; repeat for more.")
@click.option("--tier", callback=_tier)
@click.option("--timezone")
@click.option("--allowed-fields", callback=_fields, help="Comma-separated; 'all' clears it.")
@click.option(
    "--visitor-hourly-limit", type=click.IntRange(min=1), help="Events a visitor may send an hour."
)
@json_option
@click.pass_context
def site_update(
    ctx: click.Context,
    site_id: uuid.UUID,
    name: str | None,
    domains: tuple[str, ...],
    tier: Tier | None,
    timezone: str | None,
    allowed_fields: list[str] | None,
    visitor_hourly_limit: int | None,
    as_json: bool,
) -> None:
    """Change a site's name, domains, tier, allowed fields, time zone or visitor rate limit."""
    changes: dict[str, Any] = {
        "name": name,
        "tier": tier,
        "timezone": timezone,
        "visitor_hourly_limit": visitor_hourly_limit,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    if domains:
        changes["domains"] = list(domains)
    if allowed_fields is not None:
        changes["allowed_fields"] = None if allowed_fields == ["all"] else allowed_fields
    updated = with_database(
        _settings(ctx),
        lambda conn: sites.update_site(conn, site_id, sites.SiteChanges(**changes)),
    )
    emit(updated, as_json, _site_line)


@site.command("topup")
@click.argument("site_id", callback=_uuid("site"))
@click.option("--events", required=True, type=click.IntRange(min=1), help="Events to add.")
@json_option
@click.pass_context
def site_topup(ctx: click.Context, site_id: uuid.UUID, events: int, as_json: bool) -> None:
    """Add events to a site's allowance (operator)."""
    updated = with_database(_settings(ctx), lambda conn: sites.top_up(conn, site_id, events))
    emit(updated, as_json, _site_line)


@main.group()
def key() -> None:
    """API keys for the query and management API (shown once, stored hashed)."""


@key.command("create")
@click.option("--account", "account_id", required=True, callback=_uuid("account"))
@click.option("--name", default="cli", show_default=True)
@json_option
@click.pass_context
def key_create(ctx: click.Context, account_id: uuid.UUID, name: str, as_json: bool) -> None:
    """Create an API key; the key is printed once and cannot be shown again."""
    created = with_database(
        _settings(ctx), lambda conn: accounts.create_api_key(conn, account_id, name)
    )
    emit(
        {"id": created.api_key.id, "key": created.key, "name": created.api_key.name},
        as_json,
        lambda _: (
            f"{created.key}\n(key id {created.api_key.id}; store it now, it is not shown again)"
        ),
    )


@key.command("revoke")
@click.argument("key_id", callback=_uuid("key"))
@json_option
@click.pass_context
def key_revoke(ctx: click.Context, key_id: uuid.UUID, as_json: bool) -> None:
    """Revoke an API key; requests with it are refused from now on."""
    revoked = with_database(_settings(ctx), lambda conn: accounts.revoke_api_key(conn, key_id))
    emit(revoked, as_json, lambda k: f"revoked {k.id} ({k.prefix}…) at {k.revoked_at}")


if __name__ == "__main__":
    main()
