"""Lambda entry point of the query image: `query.handler.handler`."""

from query.app import create_app
from topup.lambda_adapter import LambdaHandler

handler = LambdaHandler(create_app())
