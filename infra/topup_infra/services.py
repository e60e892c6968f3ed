"""The three services as arm64 Lambda container images built from `docker/`, plus the migration
and maintenance functions (the process image with another handler). Each gets only the IAM it
needs; the grants are made by the constructs that own the resources (streams, archive)."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from topup_infra.network import Placement

ROOT = Path(__file__).resolve().parents[2]


def image(
    service: str, handler: str | None = None, extras: str | None = None
) -> lambda_.DockerImageCode:
    """The service's image; `extras` replaces the dependency groups it installs."""
    return lambda_.DockerImageCode.from_image_asset(
        str(ROOT),
        file=f"docker/{service}.Dockerfile",
        platform=ecr_assets.Platform.LINUX_ARM64,
        cmd=[handler] if handler else None,
        build_args={"EXTRAS": extras} if extras else None,
    )


class ServiceFunction(Construct):
    """One service: its function and public function URL (auth is the service's own: API keys
    and tokens for query, the Firehose access key for process; ingest is public by design)."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        code: lambda_.DockerImageCode,
        memory_mb: int,
        timeout: Duration,
        environment: dict[str, str],
        placement: Placement | None = None,
        url: bool = True,
    ) -> None:
        super().__init__(scope, id)
        self.function = lambda_.DockerImageFunction(
            self,
            "Function",
            code=code,
            architecture=lambda_.Architecture.ARM_64,
            memory_size=memory_mb,
            timeout=timeout,
            environment=environment,
            vpc=placement.vpc if placement else None,
            security_groups=[placement.security_group] if placement else None,
            vpc_subnets=placement.subnets if placement else None,
            log_group=logs.LogGroup(self, "Logs", retention=logs.RetentionDays.TWO_WEEKS),
        )
        self.url = (
            self.function.add_function_url(auth_type=lambda_.FunctionUrlAuthType.NONE)
            if url
            else None
        )
