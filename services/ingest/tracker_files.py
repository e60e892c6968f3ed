"""The built tracker scripts, served at `/js/<name>` with an ETag and a day-long max-age."""

from __future__ import annotations

import hashlib
import importlib.resources

import msgspec

SCRIPTS = ("script.js", "script.links.js")
# Cached for a day by browsers and CloudFront; the ETag makes revalidation after that cheap.
CACHE_CONTROL = "public, max-age=86400, stale-while-revalidate=604800"


class TrackerFile(msgspec.Struct, frozen=True):
    body: bytes
    etag: str


def load_tracker_files() -> dict[str, TrackerFile]:
    dist = importlib.resources.files("ingest.tracker") / "dist"
    files = {}
    for name in SCRIPTS:
        body = (dist / name).read_bytes()
        files[name] = TrackerFile(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return files
