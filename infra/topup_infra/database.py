"""Aurora Serverless v2 PostgreSQL that scales to zero: it pauses when idle (minimum capacity
0), so an idle deployment pays for storage only."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_rds as rds
from constructs import Construct

from topup_infra.config import DeployConfig

ENGINE = rds.AuroraPostgresEngineVersion.VER_16_9


class Database(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        config: DeployConfig,
        vpc: ec2.IVpc,
        clients: ec2.ISecurityGroup,
    ) -> None:
        super().__init__(scope, id)
        self.cluster = rds.DatabaseCluster(
            self,
            "Cluster",
            engine=rds.DatabaseClusterEngine.aurora_postgres(version=ENGINE),
            writer=rds.ClusterInstance.serverless_v2("Writer"),
            serverless_v2_min_capacity=0,
            serverless_v2_max_capacity=config.aurora_max_acu,
            serverless_v2_auto_pause_duration=Duration.minutes(config.aurora_auto_pause_minutes),
            credentials=rds.Credentials.from_generated_secret("topup"),
            default_database_name="topup",
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            storage_encrypted=True,
            backup=rds.BackupProps(retention=Duration.days(7)),
            removal_policy=RemovalPolicy.SNAPSHOT,
        )
        self.cluster.connections.allow_default_port_from(clients, "TopUp functions")
        assert self.cluster.secret is not None
        self.secret = self.cluster.secret
