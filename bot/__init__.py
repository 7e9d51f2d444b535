"""ACR Bot adapters: storage, HTTP, Slack, scheduler and command line around the ``metrics`` core."""

__version__ = "0.1.0"
