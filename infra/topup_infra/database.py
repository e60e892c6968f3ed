"""Aurora Serverless v2 PostgreSQL that scales to zero: it pauses when idle (minimum capacity
0), so an idle deployment pays for storage only. It accepts TLS connections only."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_rds as rds
from constructs import Construct

from topup_infra.config import DeployConfig
from topup_infra.network import Network

ENGINE = rds.AuroraPostgresEngineVersion.VER_16_9


class Database(Construct):
    def __init__(self, scope: Construct, id: str, config: DeployConfig, network: Network) -> None:
        super().__init__(scope, id)
        engine = rds.DatabaseClusterEngine.aurora_postgres(version=ENGINE)
        self.cluster = rds.DatabaseCluster(
            self,
            "Cluster",
            engine=engine,
            parameter_group=rds.ParameterGroup(
                self, "Parameters", engine=engine, parameters={"rds.force_ssl": "1"}
            ),
            writer=rds.ClusterInstance.serverless_v2(
                "Writer", publicly_accessible=network.functions is None
            ),
            serverless_v2_min_capacity=0,
            serverless_v2_max_capacity=config.aurora_max_acu,
            serverless_v2_auto_pause_duration=Duration.minutes(config.aurora_auto_pause_minutes),
            credentials=rds.Credentials.from_generated_secret("topup"),
            default_database_name="topup",
            vpc=network.vpc,
            vpc_subnets=network.database_subnets,
            storage_encrypted=True,
            backup=rds.BackupProps(retention=Duration.days(7)),
            removal_policy=RemovalPolicy.SNAPSHOT,
        )
        if network.functions is None:
            # Functions outside a VPC have no fixed addresses; the endpoint takes TLS only.
            self.cluster.connections.allow_default_port_from_any_ipv4("TopUp functions (TLS)")
        else:
            self.cluster.connections.allow_default_port_from(
                network.functions.security_group, "TopUp functions"
            )
        assert self.cluster.secret is not None
        self.secret = self.cluster.secret
