"""Lambda entry point of the process image: `process.handler.handler`."""

from topup.lambda_adapter import LambdaHandler

from process.app import create_app

handler = LambdaHandler(create_app())
