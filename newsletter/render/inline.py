"""MJML -> HTML (mjml-python, the Rust MRML port) and CSS inlining (premailer, network off)."""

from __future__ import annotations

import logging

import cssutils
import mjml
import premailer

from newsletter.errors import NewsletterError

# premailer has cssutils validate every inline style against its CSS profiles. Validation only
# logs (silenced below), yet compiling the profiles' regular expressions costs about 100 ms per
# process. The CSS comes from our own templates, so drop the profiles: the output is the same
# byte for byte (tests/test_golden.py) and a build takes a third of the time.
cssutils.profile.removeProfile(all=True)


def mjml_to_html(source: str) -> str:
    """Compile MJML to responsive HTML."""
    try:
        return mjml.mjml2html(source, disable_comments=True)
    except Exception as exc:  # mrml raises its own error types; all mean "bad template"
        raise NewsletterError(f"the email template produced invalid MJML: {exc}",
                              hint="check recent edits to templates/email.mjml.j2 "
                              "(see build/<slug>/email.mjml)") from exc


def inline_css(html: str) -> str:
    """Inline the stylesheet into style attributes for mail clients that drop <style>.

    ``allow_network=False``: a build never fetches anything; media queries stay in <style>.
    The doctype is written again: premailer drops a lower-case ``<!doctype html>`` (it compares
    it with lxml's upper-case one), and without it clients render in quirks mode.
    """
    transformer = premailer.Premailer(
        html,
        allow_network=False,
        keep_style_tags=True,
        remove_classes=False,
        strip_important=False,
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
        disable_leftover_css=False,
    )
    return transformer.transform(pretty_print=False, doctype="<!doctype html>")
