"""Errors a user can act on. The edges (CLI, HTTP, Slack) turn them into one clear line."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or configuration, worded for the user."""
