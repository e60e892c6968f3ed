"""The archive: an S3 bucket, a Glue database with the Iceberg tables `events` and
`initial_events` (the local archive's schema and partition spec, from `topup.archive_layout`),
Glue's automatic compaction on both, and an Athena workgroup with a bytes-scanned cap."""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from topup.archive_layout import COLUMNS, PARTITION_FIELDS, iceberg_fields
from topup_infra.config import DeployConfig

FAILED_PREFIX = "firehose-failed/"
RESULTS_PREFIX = "athena-results/"
WAREHOUSE_PREFIX = "warehouse/"


class Archive(Construct):
    def __init__(self, scope: Construct, id: str, config: DeployConfig) -> None:
        super().__init__(scope, id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(abort_incomplete_multipart_upload_after=Duration.days(1)),
                # Records Firehose could not deliver hold raw request context (IP, User-Agent):
                # keep them only as long as it takes to replay them.
                s3.LifecycleRule(prefix=FAILED_PREFIX, expiration=Duration.days(14)),
                s3.LifecycleRule(prefix=RESULTS_PREFIX, expiration=Duration.days(7)),
            ],
        )
        self.database_name = f"topup_{config.stage}"
        self.database = glue.CfnDatabase(
            self,
            "Database",
            catalog_id=Aws.ACCOUNT_ID,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=self.database_name, description="TopUp Analytics archive"
            ),
        )
        optimizer_role = iam.Role(
            self, "CompactionRole", assumed_by=iam.ServicePrincipal("glue.amazonaws.com")
        )
        self.tables: dict[str, glue.CfnTable] = {}
        self.grant_write(optimizer_role)
        for name in COLUMNS:
            table = glue.CfnTable(
                self,
                f"{name.title().replace('_', '')}Table",
                catalog_id=Aws.ACCOUNT_ID,
                database_name=self.database_name,
                table_input=glue.CfnTable.TableInputProperty(
                    name=name, table_type="EXTERNAL_TABLE"
                ),
                open_table_format_input=glue.CfnTable.OpenTableFormatInputProperty(
                    iceberg_input=glue.CfnTable.IcebergInputProperty(
                        metadata_operation="CREATE",
                        version="2",
                        iceberg_table_input=self._iceberg_table(name),
                    ),
                ),
            )
            table.node.add_dependency(self.database)
            optimizer = glue.CfnTableOptimizer(
                self,
                f"{name.title().replace('_', '')}Compaction",
                catalog_id=Aws.ACCOUNT_ID,
                database_name=self.database_name,
                table_name=name,
                type="compaction",
                table_optimizer_configuration=glue.CfnTableOptimizer.TableOptimizerConfigurationProperty(
                    role_arn=optimizer_role.role_arn, enabled=True
                ),
            )
            optimizer.node.add_dependency(table)
            self.tables[name] = table
        self.workgroup = athena.CfnWorkGroup(
            self,
            "Workgroup",
            name=f"topup-{config.stage}",
            recursive_delete_option=True,
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                bytes_scanned_cutoff_per_query=config.athena_bytes_scanned_cutoff,
                enforce_work_group_configuration=True,
                engine_version=athena.CfnWorkGroup.EngineVersionProperty(
                    selected_engine_version="Athena engine version 3"
                ),
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=self.bucket.s3_url_for_object(RESULTS_PREFIX)
                ),
            ),
        )

    def grant_write(self, grantee: iam.IGrantable) -> None:
        """What writing the Iceberg tables takes: their files, and committing in Glue."""
        self.bucket.grant_read_write(grantee)
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["glue:GetTable", "glue:GetDatabase", "glue:UpdateTable"],
                resources=[self.catalog_arn, self.database_arn, self.table_arn("*")],
            )
        )

    def _iceberg_table(self, name: str) -> glue.CfnTable.IcebergTableInputProperty:
        fields = iceberg_fields(name)
        ids = {column: field_id for field_id, column, _, _ in fields}
        return glue.CfnTable.IcebergTableInputProperty(
            location=self.bucket.s3_url_for_object(f"{WAREHOUSE_PREFIX}{name}"),
            schema=glue.CfnTable.IcebergSchemaProperty(
                type="struct",
                fields=[
                    glue.CfnTable.IcebergStructFieldProperty(id=i, name=n, type=t, required=r)
                    for i, n, t, r in fields
                ],
            ),
            partition_spec=glue.CfnTable.IcebergPartitionSpecProperty(
                fields=[
                    glue.CfnTable.IcebergPartitionFieldProperty(
                        name=field, source_id=ids[source], transform=transform, field_id=1000 + i
                    )
                    for i, (field, source, transform) in enumerate(PARTITION_FIELDS)
                ],
            ),
            properties={"format-version": "2", "write.format.default": "parquet"},
        )

    @property
    def catalog_arn(self) -> str:
        return arn("glue", "catalog")

    @property
    def database_arn(self) -> str:
        return arn("glue", f"database/{self.database_name}")

    def table_arn(self, table: str) -> str:
        return arn("glue", f"table/{self.database_name}/{table}")

    @property
    def workgroup_arn(self) -> str:
        return arn("athena", f"workgroup/{self.workgroup.name}")


def arn(service: str, resource: str) -> str:
    """An ARN in this stack's partition, region and account."""
    return f"arn:{Aws.PARTITION}:{service}:{Aws.REGION}:{Aws.ACCOUNT_ID}:{resource}"
