"""Cognito: the user pool the dashboard signs in with (hosted login, authorization code with
PKCE), whose ID tokens the query service verifies.

The app client's callback is the CloudFront URL, but CloudFront's origin is the query function,
whose settings name the app client: a cycle. So the client is created plain, and its OAuth
settings (with the callback) are set by a custom resource once the distribution exists.
"""

from __future__ import annotations

from aws_cdk import Aws, Fn, RemovalPolicy
from aws_cdk import aws_cognito as cognito
from aws_cdk import custom_resources as cr
from constructs import Construct

from topup_infra.config import DeployConfig


class Auth(Construct):
    def __init__(self, scope: Construct, id: str, config: DeployConfig) -> None:
        super().__init__(scope, id)
        self.pool = cognito.UserPool(
            self,
            "Users",
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(email=True),
            standard_attributes=cognito.StandardAttributes(
                email=cognito.StandardAttribute(required=True, mutable=True)
            ),
            password_policy=cognito.PasswordPolicy(min_length=12),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.client = cognito.CfnUserPoolClient(
            self,
            "Dashboard",
            user_pool_id=self.pool.user_pool_id,
            generate_secret=False,
            prevent_user_existence_errors="ENABLED",
        )
        prefix = config.auth_domain_prefix or Fn.join("-", ["topup", config.stage, Aws.ACCOUNT_ID])
        self.domain = cognito.CfnUserPoolDomain(
            self, "Domain", domain=prefix, user_pool_id=self.pool.user_pool_id
        )
        self.login_url = Fn.join(
            "", ["https://", prefix, ".auth.", Aws.REGION, ".amazoncognito.com"]
        )
        self.issuer = f"https://cognito-idp.{Aws.REGION}.amazonaws.com/{self.pool.user_pool_id}"
        self.jwks_url = f"{self.issuer}/.well-known/jwks.json"

    def allow_login_at(self, dashboard_url: str) -> cr.AwsCustomResource:
        """Turn on the hosted login for the dashboard at `dashboard_url` (see the module doc)."""
        call = cr.AwsSdkCall(
            service="CognitoIdentityServiceProvider",
            action="updateUserPoolClient",
            parameters={
                "UserPoolId": self.pool.user_pool_id,
                "ClientId": self.client.ref,
                "AllowedOAuthFlowsUserPoolClient": True,
                "AllowedOAuthFlows": ["code"],
                "AllowedOAuthScopes": ["openid", "email"],
                "SupportedIdentityProviders": ["COGNITO"],
                "CallbackURLs": [f"{dashboard_url}/"],
                "LogoutURLs": [f"{dashboard_url}/"],
                "PreventUserExistenceErrors": "ENABLED",
            },
            physical_resource_id=cr.PhysicalResourceId.of("topup-dashboard-login"),
        )
        return cr.AwsCustomResource(
            self,
            "DashboardLogin",
            on_create=call,
            on_update=call,
            policy=cr.AwsCustomResourcePolicy.from_sdk_calls(resources=[self.pool.user_pool_arn]),
            install_latest_aws_sdk=False,
        )
