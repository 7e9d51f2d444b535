"""The HTTP edge of the bot: the signed contacts webhook, health, and the composable Starlette app."""
