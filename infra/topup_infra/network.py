"""Where the database lives, and whether the functions join its VPC (`network`).

- **public** (default): Aurora sits in public subnets with a public endpoint that accepts only
  TLS (`rds.force_ssl`); the functions run outside any VPC and verify the server's certificate
  against RDS's CA bundle (`sslmode=verify-full`, docker/). They reach Secrets Manager, Firehose,
  Athena and Cognito's keys (JWKS) the way any Lambda does, so the network costs nothing: no NAT
  gateway, no interface endpoints. The database's guard is its TLS-only endpoint and generated
  password, not a private network.
- **private**: Aurora and the functions that use it sit in private subnets; one NAT gateway
  (~$33 a month) gives those functions the AWS APIs and the Cognito JWKS, which no interface
  endpoint serves for a user pool with a hosted-login domain; S3 goes through the free gateway
  endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from topup_infra.config import DeployConfig


@dataclass(frozen=True)
class Placement:
    """Where a function that uses the database runs: a VPC's subnets and security group."""

    vpc: ec2.IVpc
    subnets: ec2.SubnetSelection
    security_group: ec2.ISecurityGroup


class Network(Construct):
    def __init__(self, scope: Construct, id: str, config: DeployConfig) -> None:
        super().__init__(scope, id)
        private = config.network == "private"
        public_subnets = ec2.SubnetConfiguration(
            name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24
        )
        private_subnets = ec2.SubnetConfiguration(
            name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=24
        )
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=1 if private else 0,
            subnet_configuration=[public_subnets, private_subnets] if private else [public_subnets],
        )
        self.database_subnets = ec2.SubnetSelection(
            subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS if private else ec2.SubnetType.PUBLIC
        )
        self.functions: Placement | None = None
        if private:
            self.vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3)
            self.functions = Placement(
                vpc=self.vpc,
                subnets=self.database_subnets,
                security_group=ec2.SecurityGroup(
                    self, "Functions", vpc=self.vpc, description="TopUp functions"
                ),
            )
