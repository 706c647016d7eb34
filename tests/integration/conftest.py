"""The integration tests' fixtures: the web tier over a real database, loopback receivers."""

from __future__ import annotations

from tests import receivers, web_tier

make_web = web_tier.make_web
web = web_tier.web
web_on_each_backend = web_tier.web_on_each_backend
serve_in_thread = web_tier.serve_in_thread
smtp_server = receivers.smtp_server
