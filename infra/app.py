"""`cdk deploy`: TopUp Analytics in one stack. Settings come from context (cdk.json or -c)."""

import aws_cdk as cdk

from topup_infra.config import config_from_context
from topup_infra.stack import TopupStack


def build_app(context: dict | None = None) -> cdk.App:
    app = cdk.App(context=context)
    config = config_from_context(
        app.node.get_context("topup") if app.node.try_get_context("topup") else {}
    )
    TopupStack(
        app,
        f"Topup-{config.stage}",
        config,
        description="TopUp Analytics: cookieless web analytics, serverless",
    )
    return app


if __name__ == "__main__":
    build_app().synth()
