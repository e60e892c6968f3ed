"""The `topup` command, run as a real subprocess as an operator would."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TOPUP = str(Path(sys.executable).parent / "topup")


def topup(
    *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TOPUP_")} | (env or {})
    result = subprocess.run(
        [TOPUP, *args], capture_output=True, text=True, env=full_env, timeout=120
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def env(database_url, tmp_path):
    return {"TOPUP_DATABASE_URL": database_url, "TOPUP_DATA_DIR": str(tmp_path)}


def test_every_command_has_help():
    commands = [
        [],
        ["dev"],
        ["migrate"],
        ["maintain"],
        ["account"],
        ["account", "create"],
        ["account", "list"],
        ["site"],
        ["site", "create"],
        ["site", "list"],
        ["site", "update"],
        ["site", "topup"],
        ["key"],
        ["key", "create"],
        ["key", "revoke"],
    ]
    for command in commands:
        result = topup(*command, "--help")
        assert "Usage: topup" in result.stdout


def test_account_site_and_key_round_trip(env):
    account = json.loads(topup("account", "create", "--name", "Acme", "--json", env=env).stdout)
    site = json.loads(
        topup(
            "site",
            "create",
            "--account",
            account["id"],
            "--name",
            "Blog",
            "--domain",
            "example.com",
            "--domain",
            "www.shop.example.com",
            "--tier",
            "privacy_policy",
            "--timezone",
            "Europe/Berlin",
            "--allowance",
            "1000",
            "--json",
            env=env,
        ).stdout
    )
    assert site["domains"] == ["example.com", "shop.example.com"]
    assert site["tier"] == "privacy_policy"
    listed = json.loads(topup("site", "list", "--json", env=env).stdout)
    assert [s["id"] for s in listed] == [site["id"]]
    human = topup("site", "list", env=env).stdout
    assert site["id"] in human and "tier=privacy_policy" in human

    updated = json.loads(
        topup(
            "site",
            "update",
            site["id"],
            "--tier",
            "full",
            "--allowed-fields",
            "country,distinct_id",
            "--json",
            env=env,
        ).stdout
    )
    assert updated["tier"] == "full" and updated["allowed_fields"] == ["country", "distinct_id"]
    topped = json.loads(
        topup("site", "topup", site["id"], "--events", "500", "--json", env=env).stdout
    )
    assert topped["allowance_remaining"] == 1500

    key = json.loads(topup("key", "create", "--account", account["id"], "--json", env=env).stdout)
    assert key["key"].startswith("tk_")
    revoked = json.loads(topup("key", "revoke", key["id"], "--json", env=env).stdout)
    assert revoked["revoked_at"] is not None


def test_migrate_reports_nothing_to_do_on_a_migrated_database(env):
    result = topup("migrate", env=env)
    assert result.stdout.strip() == "schema is up to date"


def test_two_concurrent_migrate_processes_apply_each_migration_once(postgres_server_url):
    import asyncio

    from tests.conftest import database_url_for
    from topup.database import bundled_migrations, connect

    async def recreate() -> None:
        admin = await connect(postgres_server_url)
        await admin.execute("DROP DATABASE IF EXISTS cli_race WITH (FORCE)")
        await admin.execute("CREATE DATABASE cli_race")
        await admin.close()

    asyncio.run(recreate())
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOPUP_")}
    env["TOPUP_DATABASE_URL"] = database_url_for(postgres_server_url, "cli_race")
    runs = [
        subprocess.Popen([TOPUP, "migrate", "--json"], stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    outputs = [json.loads(p.communicate(timeout=120)[0]) for p in runs]
    assert all(p.returncode == 0 for p in runs)
    assert sorted(len(o["applied"]) for o in outputs) == [0, len(bundled_migrations())]
    assert json.loads(topup("migrate", "--json", env=env).stdout) == {"applied": []}


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["migrate"],
            {"TOPUP_DATABASE_URL": "mysql://x@y/z"},
            "topup: TOPUP_DATABASE_URL: must be a postgresql:// URL",
        ),
        (
            ["migrate"],
            {"TOPUP_DATABASE_URL": "postgresql://nobody:secret@127.0.0.1:1/none"},
            "topup: cannot connect to postgresql://nobody:***@127.0.0.1:1/none",
        ),
        (
            ["site", "list"],
            {"TOPUP_DEFAULT_TIER": "gold"},
            "topup: TOPUP_DEFAULT_TIER: unknown tier",
        ),
        (
            [
                "site",
                "create",
                "--account",
                "00000000-0000-0000-0000-000000000000",
                "--name",
                "x",
                "--domain",
                "a.com",
                "--tier",
                "gold",
            ],
            {},
            "topup: unknown tier 'gold' (expected one of: banner_free, privacy_policy, full)",
        ),
        (["site", "update", "nope"], {}, "Invalid value for 'SITE_ID': not a site id: 'nope'"),
    ],
)
def test_bad_configuration_is_one_clear_line_and_exit_2(args, env, message):
    result = topup(*args, env=env, check=False)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert "secret" not in result.stderr


def test_missing_rows_exit_1_with_a_message(env):
    result = topup(
        "site",
        "topup",
        "00000000-0000-0000-0000-000000000000",
        "--events",
        "5",
        env=env,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "topup: no site 00000000-0000-0000-0000-000000000000"
