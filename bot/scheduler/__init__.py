"""The scheduler of ``acr-bot serve``: daily digests and threshold alerts, delivered exactly once via an outbox.

``times`` (when), ``digest`` and ``alerts`` (what), ``delivery`` (posting with retries), ``jobs`` (the runs that
``acr-bot digest``/``alerts`` and the APScheduler jobs share), ``service`` (APScheduler inside the server).
"""
