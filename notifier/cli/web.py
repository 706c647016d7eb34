"""``notifier serve``: the HTTP API, the web page and the probes, without the scheduler."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

import structlog

from notifier import exitcodes
from notifier.config.settings import Settings

log = structlog.get_logger("notifier.cli")


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Serve the web tier on NOTIFIER_HTTP_ADDRESS until SIGTERM/SIGINT."""
    del args
    from notifier.runtime.serve import WebService  # noqa: PLC0415
    from notifier.web.server import HttpBindError  # noqa: PLC0415 - heavy, only for `serve`

    if settings.http_address is None:
        sys.stderr.write(
            "notifier: configuration error: NOTIFIER_HTTP_ADDRESS='off': notifier serve needs "
            "an address to listen on\n"
        )
        return exitcodes.CONFIG
    try:
        code = WebService(settings).run()
    except HttpBindError as error:
        log.error("http.bind_failed", reason=str(error))
        return exitcodes.UNAVAILABLE
    if code != exitcodes.OK:  # pragma: no cover - run() returns 0 today
        logging.shutdown()
        os._exit(code)
    return code


def add_commands(commands: Any) -> None:
    """Add ``serve`` to the top-level subparsers."""
    serve = commands.add_parser(
        "serve",
        help="serve the HTTP API, the web page and the probes, without the scheduler",
    )
    serve.set_defaults(handler=cmd_serve, own_sigterm=True)  # it stops on SIGTERM with 0
