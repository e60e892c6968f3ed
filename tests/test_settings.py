import pytest

from topup.settings import SettingsError, load_settings
from topup.tiers import Tier


def test_defaults_run_on_a_laptop():
    settings = load_settings({})
    assert settings.database_url is None
    assert settings.data_dir == ".topup"
    assert settings.retention_days == 35
    assert settings.default_tier is Tier.BANNER_FREE
    assert settings.sink == "local"


def test_reads_typed_values_from_topup_variables():
    settings = load_settings(
        {
            "TOPUP_DATABASE_URL": "postgresql://u:p@db:5432/topup",
            "TOPUP_RETENTION_DAYS": "60",
            "TOPUP_DEFAULT_TIER": "full",
            "TOPUP_BUFFER_MAX_SECONDS": "0.25",
            "TOPUP_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.0.1",
            "UNRELATED": "ignored",
        }
    )
    assert settings.database_url == "postgresql://u:p@db:5432/topup"
    assert settings.retention_days == 60
    assert settings.default_tier is Tier.FULL
    assert settings.buffer_max_seconds == 0.25
    assert settings.trusted_proxies == ["10.0.0.0/8", "192.168.0.1"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"TOPUP_DATABASE_URL": "mysql://root:hunter2@db/x"},
            "TOPUP_DATABASE_URL: must be a postgresql:// URL",
        ),
        (
            {"TOPUP_DEFAULT_TIER": "gold"},
            "TOPUP_DEFAULT_TIER: unknown tier, expected one of: banner_free",
        ),
        ({"TOPUP_RETENTION_DAYS": "many"}, "TOPUP_RETENTION_DAYS: Expected `int`"),
        ({"TOPUP_RETENTION_DAYS": "0"}, "TOPUP_RETENTION_DAYS: Expected `int` >= 1"),
        ({"TOPUP_SINK": "kafka"}, "TOPUP_SINK:"),
        (
            {"TOPUP_RETENTION_DAYS": "20"},
            "TOPUP_RETENTION_DAYS (20) must be greater than TOPUP_RECENT_WINDOW_DAYS",
        ),
    ],
)
def test_bad_values_name_the_variable(env, expected):
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert str(caught.value).startswith(expected), str(caught.value)
    assert "\n" not in str(caught.value)


def test_database_password_is_not_echoed():
    with pytest.raises(SettingsError) as caught:
        load_settings({"TOPUP_DATABASE_URL": "mysql://root:hunter2@db/x"})
    assert "hunter2" not in str(caught.value)


def test_every_setting_is_documented_in_the_readme():
    from pathlib import Path

    import msgspec

    from topup.settings import Settings, env_name

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    missing = [
        env_name(f.name)
        for f in msgspec.structs.fields(Settings)
        if f"`{env_name(f.name)}`" not in readme
    ]
    assert missing == []
