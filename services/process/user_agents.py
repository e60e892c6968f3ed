"""User-Agent → browser, OS, device, and whether it is a bot. Parsed once per distinct string.

ua-parser (with its Rust resolver) reads browser/OS/device; crawlerdetect's patterns catch the
crawlers ua-parser does not call "Spider". Both are slow on a miss (~15 µs and ~160 µs here), so
the whole classification is cached per User-Agent string: real traffic repeats them heavily.
"""

from __future__ import annotations

from functools import lru_cache

import msgspec
import ua_parser
from crawlerdetect import CrawlerDetect
from ua_parser import regex

_parser: ua_parser.Parser | None = None
_crawlers = CrawlerDetect()

# Headless and automation browsers that crawlerdetect does not list.
_HEADLESS = ("HeadlessChrome", "PhantomJS", "Lighthouse", "Chrome-Lighthouse", "Electron/")
_TABLETS = frozenset({"iPad", "Kindle", "Nexus 7", "Nexus 9", "Nexus 10"})


class Agent(msgspec.Struct, frozen=True):
    is_bot: bool
    browser: str | None = None
    browser_version: str | None = None
    os: str | None = None
    os_version: str | None = None
    device: str | None = None  # Mobile, Tablet, Laptop or Desktop
    device_model: str | None = None
    device_manufacturer: str | None = None


_A_BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)


def warm_up() -> None:
    """Load the parser's patterns (~0.2 s): at start-up, not on the first request."""
    global _parser
    if _parser is None:
        _parser = ua_parser.Parser(regex.Resolver(ua_parser.load_builtins()))
        _parser.parse("Mozilla/5.0")
        # A browser's string: "Mozilla/5.0" alone is cut away by the exclusions before the
        # crawler pattern (compiled on first use, ~30 ms) is reached.
        _crawlers.isCrawler(_A_BROWSER)


def _version(*parts: str | None) -> str | None:
    kept = []
    for part in parts:
        if part is None:
            break
        kept.append(part)
    return ".".join(kept) or None


_MOBILE_OS = frozenset({"iOS", "Android", "Windows Phone", "KaiOS"})


def _device_class(os_family: str | None, device_family: str | None, ua: str) -> str:
    """Mobile, Tablet or Desktop from the User-Agent (Android without "Mobile" is a tablet,
    as Google documents); `device_from_screen` refines it when the screen width is known."""
    if (
        device_family in _TABLETS
        or "Tablet" in ua
        or (os_family == "Android" and "Mobile" not in ua)
    ):
        return "Tablet"
    if os_family in _MOBILE_OS or "Mobi" in ua:
        return "Mobile"
    return "Desktop"


def device_from_screen(width: int) -> str:
    """Plausible's screen classes, by CSS pixel width."""
    if width < 576:
        return "Mobile"
    if width < 992:
        return "Tablet"
    if width < 1440:
        return "Laptop"
    return "Desktop"


@lru_cache(maxsize=20_000)
def classify(ua: str | None) -> Agent:
    """Everything process keeps from a User-Agent string (the string itself is never stored)."""
    if not ua or not ua.strip():
        return Agent(is_bot=True)  # browsers always send one
    warm_up()
    assert _parser is not None
    parsed = _parser.parse(ua)
    browser, os_, device = parsed.user_agent, parsed.os, parsed.device
    is_bot = (
        (device is not None and device.family == "Spider")
        or any(marker in ua for marker in _HEADLESS)
        or _crawlers.isCrawler(ua)
    )
    os_family = os_.family if os_ and os_.family != "Other" else None
    device_family = device.family if device and device.family != "Other" else None
    return Agent(
        is_bot=is_bot,
        browser=browser.family if browser and browser.family != "Other" else None,
        browser_version=_version(browser.major, browser.minor, browser.patch) if browser else None,
        os=os_family,
        os_version=_version(os_.major, os_.minor, os_.patch) if os_ else None,
        device=_device_class(os_family, device_family, ua),
        device_model=device.model if device and device.model else None,
        device_manufacturer=device.brand if device and device.brand else None,
    )
