"""Lambda entry point of the ingest image: `ingest.handler.handler`."""

from topup.lambda_adapter import LambdaHandler

from ingest.app import create_app

handler = LambdaHandler(create_app())
