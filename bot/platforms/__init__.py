"""Webhooks of contact-center platforms: each platform's own delivery, verified with its own scheme and secret.

One module per platform beside the shared path in ``base``. Adding a platform is one module (a ``Platform``
subclass), one settings block (``bot/settings.py`` and ``.env.example``), one README section and one test file,
and its class in ``PLATFORMS`` below.
"""

from __future__ import annotations

from starlette.routing import Route

from bot.http.coalesce import WriteCoalescer
from bot.platforms.amazon_connect import AmazonConnect
from bot.platforms.base import Decoders, Platform, PlatformEndpoint
from bot.platforms.chatwoot import Chatwoot
from bot.platforms.decoding import decoders_for
from bot.platforms.intercom import Intercom
from bot.platforms.twilio import Twilio
from bot.platforms.zendesk import Zendesk
from bot.settings import Settings
from bot.storage import ContactStore

PLATFORMS: tuple[type[Platform], ...] = (AmazonConnect, Zendesk, Intercom, Chatwoot, Twilio)


def platform_routes(settings: Settings, store: ContactStore) -> tuple[list[Route], Decoders]:
    """``POST /webhooks/<platform>`` for every platform, and the decoders they share (``bot.platforms.decoding``;
    the caller closes them when the server stops). Their writes share one group-commit writer."""
    writer = WriteCoalescer(store)
    platforms = [platform(settings) for platform in PLATFORMS]
    decoders = decoders_for(platforms, settings.platform_decode_workers)
    return [PlatformEndpoint(platform, writer, store, decoders).route() for platform in platforms], decoders


def platform_names() -> list[str]:
    """The platforms' names: their records' source, and how a roster names their agent ids."""
    return [platform.name for platform in PLATFORMS]
