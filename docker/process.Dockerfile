# The process service as a Lambda container image (arm64). Build context: the repository root.
FROM public.ecr.aws/lambda/python:3.11-arm64

# Only what the process group needs, at the versions of requirements.lock (EXTRAS adds
# glue-archive when process writes the archive's Glue tables itself).
ARG EXTRAS=process
COPY pyproject.toml requirements.lock README.md /tmp/src/
COPY services /tmp/src/services
RUN pip install --no-cache-dir -c /tmp/src/requirements.lock "/tmp/src[${EXTRAS}]" --target "${LAMBDA_TASK_ROOT}" \
    && rm -rf /tmp/src

# Connections to Aurora verify its certificate and host name (sslmode=verify-full) against
# Amazon RDS's CA bundle, fetched when the image is built (readable by Lambda's user).
ARG RDS_CA_BUNDLE=https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem
RUN python -c "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])" \
        "${RDS_CA_BUNDLE}" /opt/rds-ca-bundle.pem \
    && chmod 644 /opt/rds-ca-bundle.pem
ENV TOPUP_DATABASE_CA_FILE=/opt/rds-ca-bundle.pem

CMD ["process.handler.handler"]
