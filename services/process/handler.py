"""Lambda entry point of the process image: `process.handler.handler`."""

from process.app import create_app
from topup.lambda_adapter import LambdaHandler
from topup.settings import load_settings

settings = load_settings()
handler = LambdaHandler(create_app(settings), idle_session_s=settings.database_idle_session_s)
