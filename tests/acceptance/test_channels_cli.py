"""Channels through the installed command, configured by environment and by TOML.

Webhook and email sinks, `sinks test`, `deliveries list`, `notifications ack`, snoozes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from aiosmtpd.controller import Controller
from pytest_httpserver import HTTPServer
from standardwebhooks.webhooks import Webhook
from werkzeug import Request, Response

from tests.receivers import Mailbox, free_port

from .conftest import cli

SECRET = (
    "whsec_/j2IKtFtDDJen7Aa/qs3ENS+18+bRW3M"  # not the docs' example secret, which start-up refuses
)
WARN = re.compile(r"Warn: API Token (?P<name>.+) \(ID (?P<id>[^)]+)\) will expire")


class Receiver:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[tuple[dict[str, str], bytes]] = []

    def __call__(self, request: Request) -> Response:
        self.requests.append((dict(request.headers), request.get_data()))
        return Response("", status=self.status)


def webhook_env(env: dict[str, str], server: HTTPServer) -> dict[str, str]:
    return {
        **env,
        "NOTIFIER_SINKS": "log,ui,webhook",
        "NOTIFIER_WEBHOOK_URL": server.url_for("/hook"),
        "NOTIFIER_WEBHOOK_SECRET": SECRET,
    }


class TestWebhook:
    def test_check_posts_a_signed_notice(self, env: dict[str, str], httpserver: HTTPServer) -> None:
        """A check with the webhook sink on POSTs one signed notice per token."""
        receiver = Receiver()
        httpserver.expect_request("/hook", method="POST").respond_with_handler(receiver)
        cli("tokens", "create", "--name", "ci", "--ttl", "2d", "--owner", "o@x", env=env)
        result = cli("check", env=webhook_env(env, httpserver))
        assert result.returncode == 0, result.stderr
        ((headers, body),) = receiver.requests
        payload = Webhook(SECRET).verify(body, headers)
        assert payload["token"]["name"] == "ci"
        assert payload["token"]["owner"] == "o@x"
        assert SECRET not in result.stderr

    def test_sinks_test_reports_each_answer(
        self, env: dict[str, str], httpserver: HTTPServer
    ) -> None:
        """`sinks test` sends a test notice and prints what each sink answered."""
        httpserver.expect_request("/hook").respond_with_handler(Receiver(status=503))
        result = cli("sinks", "test", env=webhook_env(env, httpserver))
        rows = dict(line.split(None, 1) for line in result.stdout.splitlines()[1:])
        assert rows["log"] == "ok"
        assert rows["ui"].startswith("skipped")
        assert rows["webhook"] == "failed (transient): webhook answered 503"
        assert result.returncode == 1
        one = cli("sinks", "test", "log", env=webhook_env(env, httpserver))
        assert (one.returncode, one.stdout.splitlines()[1].split()) == (0, ["log", "ok"])
        unknown = cli("sinks", "test", "pager", env=webhook_env(env, httpserver))
        assert unknown.returncode == 2

    def test_deliveries_list_shows_failures(
        self, env: dict[str, str], httpserver: HTTPServer
    ) -> None:
        """`deliveries list --failed` shows the pair, its attempts and its last error."""
        httpserver.expect_request("/hook").respond_with_handler(Receiver(status=410))
        cli("tokens", "create", "--name", "ci", "--ttl", "2d", env=env)
        configured = webhook_env(env, httpserver)
        assert cli("check", env=configured).returncode == 75
        (row,) = json.loads(cli("deliveries", "list", "--failed", "--json", env=configured).stdout)
        assert (row["sink"], row["attempts"], row["last_error"]) == (
            "webhook",
            1,
            "webhook answered 410",
        )
        everything = json.loads(cli("deliveries", "list", "--json", env=configured).stdout)
        assert {r["sink"] for r in everything} == {"log", "ui", "webhook"}

    def test_missing_url_is_a_config_error(self, env: dict[str, str]) -> None:
        """A webhook without a URL stops start-up naming the variable, exit 78."""
        result = cli("check", env={**env, "NOTIFIER_SINKS": "log,webhook:ops"})
        assert result.returncode == 78
        assert "NOTIFIER_WEBHOOK_OPS_URL: is required" in result.stderr

    def test_bad_secret_is_a_config_error(self, env: dict[str, str]) -> None:
        """A webhook secret that is not base64 is refused without printing it."""
        result = cli(
            "check",
            env={
                **env,
                "NOTIFIER_SINKS": "webhook",
                "NOTIFIER_WEBHOOK_URL": "http://127.0.0.1:1/",
                "NOTIFIER_WEBHOOK_SECRET": "hunter2!",
            },
        )
        assert result.returncode == 78
        assert "NOTIFIER_WEBHOOK_SECRET" in result.stderr
        assert "hunter2" not in result.stderr


class TestEmailFromConfigFile:
    def test_digest_per_owner(self, env: dict[str, str], tmp_path: Path) -> None:
        """An email sink described in the TOML file mails each owner one digest."""
        mailbox = Mailbox()
        port = free_port()
        controller = Controller(mailbox, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            config = tmp_path / "notifier.toml"
            config.write_text(
                '[sinks."email"]\n'
                'host = "127.0.0.1"\n'
                f"port = {port}\n"
                'security = "none"\n'
                'from = "notifier@example.com"\n'
            )
            for name, owner in [
                ("a1", "alice@example.com"),
                ("a2", "alice@example.com"),
                ("b1", "bob@example.com"),
            ]:
                cli("tokens", "create", "--name", name, "--ttl", "2d", "--owner", owner, env=env)
            result = cli("check", env={**env, "NOTIFIER_CONFIG_FILE": str(config)})
        finally:
            controller.stop()
        assert result.returncode == 0, result.stderr
        assert sorted(to[0] for to, _ in mailbox.messages) == [
            "alice@example.com",
            "bob@example.com",
        ]
        assert len(WARN.findall(result.stderr)) == 3  # the default log sink still speaks


class TestAckAndSnooze:
    def test_acknowledge(self, env: dict[str, str]) -> None:
        """`notifications ack` hides the notification and writes the audit trail."""
        cli("tokens", "create", "--name", "ci", "--ttl", "2d", env=env)
        cli("check", env=env)
        (item,) = json.loads(cli("notifications", "list", "--json", env=env).stdout)
        acked = cli("notifications", "ack", item["id"], env=env)
        assert acked.returncode == 0
        assert json.loads(cli("notifications", "list", "--json", env=env).stdout) == []
        events = json.loads(cli("audit", "list", "--json", env=env).stdout)
        assert events[0]["action"] == "ack"
        assert cli("notifications", "ack", "nope", env=env).returncode == 1

    def test_snooze_and_unsnooze(self, env: dict[str, str]) -> None:
        """A snoozed token is silent on every pass; unsnoozed, it speaks again."""
        every_pass = {**env, "NOTIFIER_BACKOFF_INTERVAL": "0"}
        token = json.loads(
            cli("tokens", "create", "--name", "ci", "--ttl", "2d", "--json", env=env).stdout
        )
        snoozed = cli("tokens", "snooze", token["id"], "--for", "3d", env=env)
        assert snoozed.returncode == 0, snoozed.stderr
        assert "for every sink until" in snoozed.stdout
        assert WARN.search(cli("check", env=every_pass).stderr) is None
        assert cli("tokens", "unsnooze", token["id"], env=env).returncode == 0
        assert WARN.search(cli("check", env=every_pass).stderr) is not None
        actions = [e["action"] for e in json.loads(cli("audit", "list", "--json", env=env).stdout)]
        assert actions[:2] == ["unsnooze", "snooze"]

    def test_deliveries_list_says_now_after_an_unsnooze(self, env: dict[str, str]) -> None:
        """An unsnoozed pair is due at once: NEXT reads "now", not the 1970 that marks it."""
        token = json.loads(
            cli("tokens", "create", "--name", "ci", "--ttl", "2d", "--json", env=env).stdout
        )
        assert cli("check", env=env).returncode == 0
        assert cli("tokens", "snooze", token["id"], "--for", "3d", env=env).returncode == 0
        assert cli("check", env=env).returncode == 0
        assert cli("tokens", "unsnooze", token["id"], env=env).returncode == 0
        table = cli("deliveries", "list", env=env).stdout.splitlines()
        assert table[0].split()[7] == "NEXT"  # "LAST SENT" is two words
        cells = [line.split() for line in table[1:]]
        assert {row[2]: row[6] for row in cells} == {"log": "now", "ui": "now"}
        assert "1970" not in "\n".join(table)
        (first, *_) = json.loads(cli("deliveries", "list", "--json", env=env).stdout)
        assert first["next_due_at"] == "1970-01-01T00:00:00Z"  # the JSON keeps the stored value

    def test_deliveries_list_of_an_unknown_sink(self, env: dict[str, str]) -> None:
        """--sink naming no configured sink (and no stored state) is exit 2, naming the sinks."""
        result = cli("deliveries", "list", "--sink", "nosuch", env=env)
        assert result.returncode == 2
        assert result.stderr == "notifier: no sink named 'nosuch' (configured: log, ui)\n"
        assert cli("deliveries", "list", "--sink", "log", env=env).returncode == 0

    def test_deliveries_list_of_a_sink_no_longer_configured(self, env: dict[str, str]) -> None:
        """A sink removed from the configuration still shows the state it left behind."""
        cli("tokens", "create", "--name", "ci", "--ttl", "2d", env=env)
        assert cli("check", env=env).returncode == 0
        only_log = {**env, "NOTIFIER_SINKS": "log"}
        result = cli("deliveries", "list", "--sink", "ui", "--json", env=only_log)
        assert result.returncode == 0, result.stderr
        assert [row["sink"] for row in json.loads(result.stdout)] == ["ui"]

    def test_snooze_beyond_the_limits(self, env: dict[str, str]) -> None:
        """--for past 100 years, or --until past year 9999, is a usage error naming it."""
        token = json.loads(
            cli("tokens", "create", "--name", "ci", "--ttl", "2d", "--json", env=env).stdout
        )
        far = cli("tokens", "snooze", token["id"], "--for", "100000000d", env=env)
        assert far.returncode == 2
        assert far.stderr.splitlines()[-1] == (
            "notifier tokens snooze: error: argument --for: '100000000d' is longer than 100 years"
        )
        late = cli("tokens", "snooze", token["id"], "--until", "9999-12-31T23:59:59-23:59", env=env)
        assert late.returncode == 2
        assert late.stderr == (
            "notifier tokens snooze: error: argument --until: 9999-12-31T23:59:59-23:59 is not "
            "between 1970 and 100 years from now\n"
        )

    def test_snooze_until_next_threshold_needs_a_threshold(self, env: dict[str, str]) -> None:
        """--until-next-threshold needs thresholds, and a token inside one."""
        far = json.loads(
            cli("tokens", "create", "--name", "far", "--ttl", "5d", "--json", env=env).stdout
        )
        near = json.loads(
            cli("tokens", "create", "--name", "near", "--ttl", "36h", "--json", env=env).stdout
        )
        none = cli("tokens", "snooze", far["id"], "--until-next-threshold", env=env)
        assert none.returncode == 1
        assert "no thresholds are configured" in none.stderr
        thresholds = {**env, "NOTIFIER_THRESHOLDS": "2d,1d"}
        early = cli("tokens", "snooze", far["id"], "--until-next-threshold", env=thresholds)
        assert early.returncode == 1
        assert "not inside a threshold" in early.stderr
        inside = cli("tokens", "snooze", near["id"], "--until-next-threshold", env=thresholds)
        assert inside.returncode == 0, inside.stderr
        assert "until its next threshold" in inside.stdout
