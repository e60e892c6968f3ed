"""Lambda entry point of the ingest image: `ingest.handler.handler`."""

from ingest.app import create_app
from topup.lambda_adapter import LambdaHandler

handler = LambdaHandler(create_app())
