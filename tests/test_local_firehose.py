"""The local firehose: Firehose's HTTP endpoint protocol, retries, and the on-disk spool."""

import asyncio
import base64
import gzip
import json
from collections import Counter

import pytest
from litestar import Litestar, Request, post
from litestar.response import Response

from tests.conftest import LiveServer
from topup.local.firehose import LocalFirehose, read_frames


class Receiver:
    """A Firehose HTTP endpoint that fails its first `failures` deliveries, then accepts."""

    def __init__(self, failures: int = 0, *, echo_wrong_id: bool = False) -> None:
        self.failures = failures
        self.echo_wrong_id = echo_wrong_id
        self.attempts: list[str] = []
        self.accepted: dict[str, list[bytes]] = {}
        self.headers: list[dict[str, str]] = []

        @post("/firehose", status_code=200)
        async def deliver(request: Request) -> Response:
            raw = await request.body()
            self.headers.append(dict(request.headers))
            if request.headers.get("content-encoding") == "gzip":
                raw = gzip.decompress(raw)
            body = json.loads(raw)
            request_id = body["requestId"]
            self.attempts.append(request_id)
            if len(self.attempts) <= self.failures:
                return Response(
                    {"requestId": request_id, "timestamp": 0, "errorMessage": "busy"},
                    status_code=503,
                )
            if self.echo_wrong_id:
                return Response({"requestId": "someone-else", "timestamp": 0}, status_code=200)
            self.accepted.setdefault(request_id, [])
            if self.accepted[request_id]:
                return Response(
                    {"requestId": request_id, "timestamp": 0}, status_code=200
                )  # redelivery
            self.accepted[request_id] = [base64.b64decode(r["data"]) for r in body["records"]]
            answer_id = "someone-else" if self.echo_wrong_id else request_id
            return Response(
                {"requestId": answer_id, "timestamp": body["timestamp"]}, status_code=200
            )

        self.app = Litestar([deliver], logging_config=None)

    def records(self) -> list[bytes]:
        return [r for batch in self.accepted.values() for r in batch]


def firehose(tmp_path, url, **kwargs):
    options = {
        "max_bytes": 1024,
        "max_seconds": 0.2,
        "first_backoff_s": 0.01,
        "max_backoff_s": 0.05,
    } | kwargs
    return LocalFirehose(tmp_path / "spool", url, "secret-key", **options)


async def test_fails_twice_then_delivers_every_record_exactly_once(tmp_path):
    receiver = Receiver(failures=2)
    async with LiveServer(receiver.app) as server:
        hose = firehose(tmp_path, f"{server.url}/firehose")
        await hose.start()
        records = [json.dumps({"n": i}).encode() + b"\n" for i in range(50)]
        for record in records:
            await hose.put(record)
        await hose.drain(10)
        await hose.close()
    assert Counter(receiver.records()) == Counter(records)
    assert len(receiver.attempts) == len(receiver.accepted) + 2
    # A retry carries the same request id, so the endpoint can recognise it.
    assert receiver.attempts[0] == receiver.attempts[1] == receiver.attempts[2]
    assert hose.pending_batches() == []


async def test_batches_by_size_and_time(tmp_path):
    receiver = Receiver()
    async with LiveServer(receiver.app) as server:
        hose = firehose(tmp_path, f"{server.url}/firehose", max_bytes=100, max_seconds=60)
        await hose.start()
        for _ in range(5):
            await hose.put(b"x" * 40)  # sealed every third record (120 bytes >= 100)
        await asyncio.sleep(0.3)
        assert [len(batch) for batch in receiver.accepted.values()] == [3]
        await hose.close()  # seals and delivers the remaining two
    assert sorted(len(batch) for batch in receiver.accepted.values()) == [2, 3]

    receiver = Receiver()
    async with LiveServer(receiver.app) as server:
        hose = firehose(tmp_path, f"{server.url}/firehose", max_bytes=10_000, max_seconds=0.1)
        await hose.start()
        await hose.put(b"lonely")
        for _ in range(100):
            if receiver.accepted:
                break
            await asyncio.sleep(0.02)
        assert receiver.records() == [b"lonely"]  # delivered by age, not size
        await hose.close()


async def test_protocol_headers_and_gzip(tmp_path):
    receiver = Receiver()
    async with LiveServer(receiver.app) as server:
        hose = firehose(tmp_path, f"{server.url}/firehose", gzip_body=True)
        await hose.start()
        await hose.put(b'{"n": 1}\n')
        await hose.drain(5)
        await hose.close()
    [headers] = receiver.headers
    [request_id] = receiver.accepted
    assert headers["x-amz-firehose-access-key"] == "secret-key"
    assert headers["x-amz-firehose-request-id"] == request_id
    assert headers["x-amz-firehose-protocol-version"] == "1.0"
    assert headers["content-type"] == "application/json"
    assert headers["content-encoding"] == "gzip"


async def test_a_200_that_does_not_echo_the_request_id_is_not_success(tmp_path):
    receiver = Receiver(echo_wrong_id=True)
    async with LiveServer(receiver.app) as server:
        hose = firehose(tmp_path, f"{server.url}/firehose")
        await hose.start()
        await hose.put(b"a")
        with pytest.raises(TimeoutError):
            await hose.drain(0.5)
        assert hose.failed_attempts >= 1
        assert len(hose.pending_batches()) == 1
        await hose.close(drain_timeout_s=0.1)


async def test_a_restart_delivers_what_was_spooled(tmp_path):
    # Nothing listens: the batches stay on disk.
    hose = firehose(tmp_path, "http://127.0.0.1:9/firehose")
    await hose.start()
    records = [f"record {i}".encode() for i in range(30)]
    for record in records:
        await hose.put(record)
    await hose.close(drain_timeout_s=0.1)
    assert hose.pending_batches()

    receiver = Receiver()
    async with LiveServer(receiver.app) as server:
        restarted = firehose(tmp_path, f"{server.url}/firehose")
        await restarted.start()
        await restarted.drain(10)
        await restarted.close()
    assert Counter(receiver.records()) == Counter(records)


async def test_a_crash_mid_segment_loses_no_acknowledged_record(tmp_path):
    hose = firehose(tmp_path, "http://127.0.0.1:9/firehose", max_bytes=10_000, max_seconds=60)
    hose.spool_dir.mkdir(parents=True)
    for i in range(3):
        await hose.put(f"acknowledged {i}".encode())
    # The process dies here: the segment is still open, and a fourth write was torn in half.
    [segment] = hose.spool_dir.glob("*.open")
    with segment.open("ab") as torn:
        torn.write(b"\x00\x00\x01\x00half a rec")
    assert read_frames(segment) == [f"acknowledged {i}".encode() for i in range(3)]

    receiver = Receiver()
    async with LiveServer(receiver.app) as server:
        restarted = firehose(tmp_path, f"{server.url}/firehose")
        await restarted.start()
        await restarted.drain(10)
        await restarted.close()
    assert receiver.records() == [f"acknowledged {i}".encode() for i in range(3)]
