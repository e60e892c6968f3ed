"""The whole system in one stack, composed of one construct per concern."""

from __future__ import annotations

from typing import Any

from aws_cdk import Aws, CfnOutput, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from topup_infra.archive import RESULTS_PREFIX, Archive
from topup_infra.auth import Auth
from topup_infra.config import DeployConfig
from topup_infra.database import Database
from topup_infra.network import Network
from topup_infra.operations import Operations
from topup_infra.router import Router
from topup_infra.services import ServiceFunction, image
from topup_infra.streams import Streams

DATABASE_CONNECT_TIMEOUT = Duration.seconds(45)
DATABASE_IDLE_SESSION = Duration.minutes(1)
QUERY_TIMEOUT = Duration.seconds(60)  # CloudFront waits for an origin at most 60 s


class TopupStack(Stack):
    def __init__(self, scope: Construct, id: str, config: DeployConfig, **kwargs: Any) -> None:
        super().__init__(scope, id, **kwargs)
        network = Network(self, "Network", config)
        database = Database(self, "Database", config, network)
        archive = Archive(self, "Archive", config)
        auth = Auth(self, "Auth", config)
        origin_secret = secretsmanager.Secret(
            self,
            "OriginSecret",
            description="Header CloudFront adds to requests for ingest",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                exclude_punctuation=True, password_length=40
            ),
        )
        common = {
            "TOPUP_AWS_REGION": Aws.REGION,
            "OTEL_TRACES_EXPORTER": "none",
            "TOPUP_RETENTION_DAYS": str(config.retention_days),
            "TOPUP_RECENT_WINDOW_DAYS": str(config.recent_window_days),
        }
        with_database = common | {
            "TOPUP_DATABASE_SECRET_ARN": database.secret.secret_arn,
            # A paused Aurora holds new connections until it runs again (~15 s, ~30 s after a
            # day paused): the first request after a quiet spell waits instead of failing.
            "TOPUP_DATABASE_CONNECT_TIMEOUT_S": str(DATABASE_CONNECT_TIMEOUT.to_seconds()),
            # Aurora pauses only without connections; a frozen function's idle ones are ended.
            "TOPUP_DATABASE_IDLE_SESSION_S": str(DATABASE_IDLE_SESSION.to_seconds()),
        }

        # One process image for the function and the tasks (the same build args: one asset).
        process_extras = "process,glue-archive" if config.archive_writer == "process" else None
        process = ServiceFunction(
            self,
            "Process",
            code=image("process", extras=process_extras),
            memory_mb=1024,
            timeout=Duration.seconds(120),
            environment=with_database,
            placement=network.functions,
        )
        assert process.url is not None
        streams = Streams(self, "Streams", config, process_url=process.url.url, archive=archive)
        process.function.add_environment(
            "TOPUP_FIREHOSE_ACCESS_KEY_SECRET_ARN", streams.access_key.secret_arn
        )
        database.secret.grant_read(process.function)
        streams.access_key.grant_read(process.function)
        # How process archives: to the delivery streams, or straight into the Glue tables.
        if config.archive_writer == "firehose":
            names = {t: s.delivery_stream_name or "" for t, s in streams.archive_streams.items()}
            archiving = {
                "TOPUP_ARCHIVE": "firehose",
                "TOPUP_ARCHIVE_EVENTS_STREAM": names["events"],
                "TOPUP_ARCHIVE_INITIAL_EVENTS_STREAM": names["initial_events"],
            }
            streams.grant_put(process.function, *streams.archive_streams.values())
        else:
            archiving = {"TOPUP_ARCHIVE": "glue", "TOPUP_ATHENA_DATABASE": archive.database_name}
            archive.grant_write(process.function)
        for name, value in archiving.items():
            process.function.add_environment(name, value)

        ingest = ServiceFunction(
            self,
            "Ingest",
            code=image("ingest"),
            memory_mb=512,
            timeout=Duration.seconds(10),
            environment=common
            | {
                "TOPUP_SINK": "firehose",
                "TOPUP_FIREHOSE_STREAM": streams.ingest.delivery_stream_name or "",
                "TOPUP_TRUST_CLOUDFRONT_HEADERS": "true",
                "TOPUP_ORIGIN_SECRET": origin_secret.secret_value.unsafe_unwrap(),
            },
        )
        streams.grant_put(ingest.function, streams.ingest)

        query = ServiceFunction(
            self,
            "Query",
            code=image("query"),
            memory_mb=1024,
            timeout=QUERY_TIMEOUT,
            environment=with_database
            | {
                "TOPUP_ARCHIVE": "firehose",
                "TOPUP_ATHENA_WORKGROUP": archive.workgroup.name,
                "TOPUP_ATHENA_DATABASE": archive.database_name,
                "TOPUP_OIDC_ISSUER": auth.issuer,
                "TOPUP_OIDC_AUDIENCE": auth.client.ref,
                "TOPUP_OIDC_JWKS_URL": auth.jwks_url,
                "TOPUP_OIDC_LOGIN_URL": auth.login_url,
            },
            placement=network.functions,
        )
        database.secret.grant_read(query.function)
        query.function.add_to_role_policy(
            iam.PolicyStatement(
                actions=[
                    "athena:StartQueryExecution",
                    "athena:GetQueryExecution",
                    "athena:GetQueryResults",
                    "athena:StopQueryExecution",
                ],
                resources=[archive.workgroup_arn],
            )
        )
        query.function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["glue:GetDatabase", "glue:GetTable", "glue:GetPartitions"],
                resources=[
                    archive.catalog_arn,
                    archive.database_arn,
                    *(archive.table_arn(t) for t in archive.tables),
                ],
            )
        )
        archive.bucket.grant_read(query.function)
        archive.bucket.grant_put(query.function, f"{RESULTS_PREFIX}*")

        assert ingest.url is not None and query.url is not None
        router = Router(
            self,
            "Router",
            ingest_url=ingest.url,
            query_url=query.url,
            origin_secret=origin_secret.secret_value.unsafe_unwrap(),
            query_timeout=QUERY_TIMEOUT,
        )
        auth.allow_login_at(router.url)

        def database_task(name: str, handler: str) -> ServiceFunction:
            """A function outside the request path that runs one task against the database."""
            task = ServiceFunction(
                self,
                name,
                code=image("process", f"topup.tasks.{handler}", extras=process_extras),
                memory_mb=512,
                timeout=Duration.minutes(5),
                environment=with_database,
                placement=network.functions,
                url=False,
            )
            database.secret.grant_read(task.function)
            return task

        migrate = database_task("Migrate", "migrate_handler")
        maintain = database_task("Maintain", "maintain_handler")
        operations = Operations(self, "Operations", config, migrate=migrate, maintain=maintain)
        operations.schema.node.add_dependency(database.cluster)

        CfnOutput(self, "DashboardUrl", value=f"{router.url}/")
        CfnOutput(self, "TrackerScriptUrl", value=f"{router.url}/js/script.js")
        CfnOutput(self, "UserPoolId", value=auth.pool.user_pool_id)
        CfnOutput(self, "UserPoolClientId", value=auth.client.ref)
        CfnOutput(self, "LoginUrl", value=auth.login_url)
