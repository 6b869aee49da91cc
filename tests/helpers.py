"""Helpers shared by several test modules (fixtures live in conftest.py)."""

from __future__ import annotations

MINIMAL_ISSUE = """\
slug: draft
edition: Spring 2027
title: Prevent Partner Newsletter
subject: Spring update
preheader: What is new this season.
date: 2027-03-17
sender:
  name: Kent and Medway Prevent Team
  email: prevent-team@example.org
sections:
  - type: article
    heading: Welcome
    body: |
      Hello partners. Read the [Prevent duty guidance](https://www.example.org/guidance).
footer:
  sender: Kent and Medway Prevent Team
  reason: You are a Prevent partner.
  privacy_url: https://www.example.org/privacy
"""
