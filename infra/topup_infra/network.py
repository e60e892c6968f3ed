"""The VPC the database and the functions that reach it live in.

No NAT gateway (the product's promise is cost: a NAT gateway alone is ~$33 a month idle).
Functions in the VPC reach AWS APIs through endpoints instead: the S3 gateway endpoint (free)
and interface endpoints for Secrets Manager (database and Firehose secrets), Firehose (process
puts to the archive streams) and Athena (query reads the archive). Interface endpoints are
billed per AZ-hour, so by default they sit in one AZ (`endpoint_azs`): the functions in the
other AZ reach them across AZs, which costs cents, not dollars.
"""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from topup_infra.config import DeployConfig


class Network(Construct):
    def __init__(self, scope: Construct, id: str, config: DeployConfig) -> None:
        super().__init__(scope, id)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
                )
            ],
        )
        self.functions = ec2.SecurityGroup(
            self, "Functions", vpc=self.vpc, description="TopUp functions"
        )
        self.vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3)
        endpoint_subnets = ec2.SubnetSelection(
            subnet_type=ec2.SubnetType.PRIVATE_ISOLATED,
            availability_zones=self.vpc.availability_zones[: config.endpoint_azs],
        )
        for name, service in (
            ("SecretsManager", ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER),
            ("Firehose", ec2.InterfaceVpcEndpointAwsService.KINESIS_FIREHOSE),
            ("Athena", ec2.InterfaceVpcEndpointAwsService.ATHENA),
        ):
            self.vpc.add_interface_endpoint(
                name,
                service=service,
                subnets=endpoint_subnets,
                security_groups=[self.functions],
                private_dns_enabled=True,
            )
        self.functions.add_ingress_rule(self.functions, ec2.Port.tcp(443), "functions to endpoints")
