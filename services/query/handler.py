"""Lambda entry point of the query image: `query.handler.handler`."""

from topup.lambda_adapter import LambdaHandler

from query.app import create_app

handler = LambdaHandler(create_app())
