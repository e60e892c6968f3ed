"""FirehoseSink against moto's server: records land in the delivery stream's destination."""

import aioboto3
import pytest

from ingest.sinks import FirehoseSink, SinkUnavailableError


async def make_stream(endpoint: str, name: str, bucket: str) -> None:
    session = aioboto3.Session()
    async with session.client("s3", endpoint_url=endpoint, region_name="us-east-1") as s3:
        await s3.create_bucket(Bucket=bucket)
    async with session.client("firehose", endpoint_url=endpoint, region_name="us-east-1") as fh:
        await fh.create_delivery_stream(
            DeliveryStreamName=name,
            DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "RoleARN": "arn:aws:iam::123456789012:role/firehose",
                "BucketARN": f"arn:aws:s3:::{bucket}",
            },
        )


async def objects_in(endpoint: str, bucket: str) -> list[bytes]:
    async with aioboto3.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1"
    ) as s3:
        listing = await s3.list_objects_v2(Bucket=bucket)
        bodies = []
        for item in listing.get("Contents", []):
            obj = await s3.get_object(Bucket=bucket, Key=item["Key"])
            bodies.append(await obj["Body"].read())
        return bodies


async def test_records_reach_the_stream_byte_exact(moto_server):
    await make_stream(moto_server, "ingest-a", "archive-a")
    sink = FirehoseSink("ingest-a", region="us-east-1", endpoint_url=moto_server)
    await sink.start()
    records = [b'{"name":"pageview","n":1}\n', b'{"name":"signup","n":2}\n{"name":"x","n":3}\n']
    try:
        for record in records:
            await sink.put(record)
    finally:
        await sink.close()
    stored = b"".join(await objects_in(moto_server, "archive-a"))
    for record in records:
        assert record in stored


async def test_a_stream_that_does_not_take_the_record_raises_after_retries(moto_server):
    sink = FirehoseSink(
        "no-such-stream",
        region="us-east-1",
        endpoint_url=moto_server,
        attempts=3,
        first_backoff_s=0.01,
    )
    await sink.start()
    try:
        with pytest.raises(SinkUnavailableError, match="ResourceNotFound"):
            await sink.put(b"{}\n")
    finally:
        await sink.close()
