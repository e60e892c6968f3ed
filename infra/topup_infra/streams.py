"""Kinesis Data Firehose: the ingest stream, delivering to process over the HTTP endpoint
protocol (its access key in Secrets Manager, failed records backed up to S3), and the two
archive streams writing into the Glue Iceberg tables with large buffers (fewer, bigger files
cost less to write and to query), unless process writes those tables itself
(`archive_writer: process`)."""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from topup_infra.archive import FAILED_PREFIX, Archive, arn
from topup_infra.config import DeployConfig

CfnStream = firehose.CfnDeliveryStream


class Streams(Construct):
    def __init__(
        self, scope: Construct, id: str, config: DeployConfig, *, process_url: str, archive: Archive
    ) -> None:
        super().__init__(scope, id)
        # Firehose reads a Secrets Manager key as {"api_key": "..."}.
        self.access_key = secretsmanager.Secret(
            self,
            "AccessKey",
            description="Key Firehose sends to the process function",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template="{}",  # noqa: S106 (an empty JSON object)
                generate_string_key="api_key",
                exclude_punctuation=True,
                password_length=48,
            ),
        )
        role = iam.Role(
            self, "IngestRole", assumed_by=iam.ServicePrincipal("firehose.amazonaws.com")
        )
        self.access_key.grant_read(role)
        archive.bucket.grant_put(role, f"{FAILED_PREFIX}*")
        self.ingest = CfnStream(
            self,
            "Ingest",
            delivery_stream_name=f"topup-{config.stage}-ingest",
            delivery_stream_type="DirectPut",
            http_endpoint_destination_configuration=CfnStream.HttpEndpointDestinationConfigurationProperty(
                endpoint_configuration=CfnStream.HttpEndpointConfigurationProperty(
                    url=f"{process_url.rstrip('/')}/firehose", name="topup-process"
                ),
                secrets_manager_configuration=CfnStream.SecretsManagerConfigurationProperty(
                    enabled=True, secret_arn=self.access_key.secret_arn, role_arn=role.role_arn
                ),
                request_configuration=CfnStream.HttpEndpointRequestConfigurationProperty(
                    content_encoding="GZIP"
                ),
                buffering_hints=CfnStream.BufferingHintsProperty(
                    interval_in_seconds=config.ingest_buffer_seconds,
                    size_in_m_bs=config.ingest_buffer_mb,
                ),
                retry_options=CfnStream.RetryOptionsProperty(duration_in_seconds=3600),
                role_arn=role.role_arn,
                s3_backup_mode="FailedDataOnly",
                s3_configuration=CfnStream.S3DestinationConfigurationProperty(
                    bucket_arn=archive.bucket.bucket_arn,
                    role_arn=role.role_arn,
                    prefix=f"{FAILED_PREFIX}ingest/",
                    compression_format="GZIP",
                ),
            ),
        )
        self.ingest.node.add_dependency(role)

        self.archive_streams: dict[str, CfnStream] = {}
        if config.archive_writer == "firehose":
            self._archive_streams(config, archive)

    def _archive_streams(self, config: DeployConfig, archive: Archive) -> None:
        archive_role = iam.Role(
            self, "ArchiveRole", assumed_by=iam.ServicePrincipal("firehose.amazonaws.com")
        )
        archive.grant_write(archive_role)
        for table in archive.tables:
            stream = CfnStream(
                self,
                f"Archive{table.title().replace('_', '')}",
                delivery_stream_name=f"topup-{config.stage}-archive-{table.replace('_', '-')}",
                delivery_stream_type="DirectPut",
                iceberg_destination_configuration=CfnStream.IcebergDestinationConfigurationProperty(
                    catalog_configuration=CfnStream.CatalogConfigurationProperty(
                        catalog_arn=archive.catalog_arn
                    ),
                    destination_table_configuration_list=[
                        CfnStream.DestinationTableConfigurationProperty(
                            destination_database_name=archive.database_name,
                            destination_table_name=table,
                        )
                    ],
                    buffering_hints=CfnStream.BufferingHintsProperty(
                        interval_in_seconds=config.archive_buffer_seconds,
                        size_in_m_bs=config.archive_buffer_mb,
                    ),
                    role_arn=archive_role.role_arn,
                    s3_configuration=CfnStream.S3DestinationConfigurationProperty(
                        bucket_arn=archive.bucket.bucket_arn,
                        role_arn=archive_role.role_arn,
                        error_output_prefix=f"{FAILED_PREFIX}archive-{table}/",
                    ),
                ),
            )
            stream.node.add_dependency(archive_role)
            stream.node.add_dependency(archive.tables[table])
            self.archive_streams[table] = stream

    def arn(self, stream: CfnStream) -> str:
        return arn("firehose", f"deliverystream/{stream.delivery_stream_name}")

    def grant_put(self, grantee: iam.IGrantable, *streams: CfnStream) -> None:
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["firehose:PutRecord", "firehose:PutRecordBatch"],
                resources=[self.arn(s) for s in streams],
            )
        )
