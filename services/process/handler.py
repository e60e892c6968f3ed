"""Lambda entry point of the process image: `process.handler.handler`."""

from process.app import create_app
from topup.lambda_adapter import LambdaHandler

handler = LambdaHandler(create_app())
