"""What runs besides requests: the schema migration at every deploy (a custom resource whose
handler runs `topup migrate`), and `topup maintain` on a schedule (partitions, retention,
salts, the closed days' visit totals, today's and yesterday's counts so far)."""

from __future__ import annotations

import hashlib

from aws_cdk import CustomResource, Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import custom_resources as cr
from constructs import Construct

from topup.database import bundled_migrations
from topup_infra.config import DeployConfig
from topup_infra.services import ServiceFunction


def migrations_version() -> str:
    """Changes whenever a migration is added, so the deploy runs the custom resource again."""
    digest = hashlib.sha256()
    for migration in bundled_migrations():
        digest.update(migration.checksum.encode())
    return digest.hexdigest()[:16]


class Operations(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        config: DeployConfig,
        *,
        migrate: ServiceFunction,
        maintain: ServiceFunction,
    ) -> None:
        super().__init__(scope, id)
        provider = cr.Provider(self, "MigrationProvider", on_event_handler=migrate.function)
        self.schema = CustomResource(
            self,
            "Schema",
            service_token=provider.service_token,
            resource_type="Custom::TopupSchema",
            properties={"Version": migrations_version()},
        )
        self.schedule = events.Rule(
            self,
            "Maintenance",
            description="topup maintain: partitions, retention, salts, visit days",
            schedule=events.Schedule.rate(Duration.hours(config.maintenance_hours)),
            targets=[targets.LambdaFunction(maintain.function, retry_attempts=2)],
        )
