"""newsletter: author, build, send and measure a partner newsletter.

The flow, one module a step::

    load (YAML -> model) -> render (Jinja2 -> MJML -> premailer) -> links (click IDs)
    -> build (files on disk) -> audiences (lists, plan) -> ledger (db) -> send -> adapters
    -> tracking (tokens, server, classify) -> report
"""

__version__ = "0.1.0"
