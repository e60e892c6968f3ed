# The ingest service as a Lambda container image (arm64). Build context: the repository root.
FROM public.ecr.aws/lambda/python:3.11-arm64

# Only what the ingest group needs, at the versions of requirements.lock.
COPY pyproject.toml requirements.lock README.md /tmp/src/
COPY services /tmp/src/services
RUN pip install --no-cache-dir -c /tmp/src/requirements.lock "/tmp/src[ingest]" --target "${LAMBDA_TASK_ROOT}" \
    && rm -rf /tmp/src

CMD ["ingest.handler.handler"]
