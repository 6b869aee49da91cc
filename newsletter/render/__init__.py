"""Rendering: issue model -> MJML (Jinja2) -> HTML (mjml-python) -> inlined CSS (premailer),
plus the plain-text part. Orchestrated by :func:`newsletter.render.email.render_issue`."""
