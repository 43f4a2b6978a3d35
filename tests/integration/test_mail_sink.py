"""The weekly report by mail (issue 18 pt 4): an smtp sink sends each cycle's report as text and HTML
through the outbox, over STARTTLS with credentials from the environment, to a real SMTP server on
127.0.0.1 (aiosmtpd); a server that refuses is retried and dead-lettered; secrets stay out of logs."""

from __future__ import annotations

import email
import email.policy
import logging
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from engine.alerts import load_sinks
from engine.errors import InvalidInput
from engine.governance import Governance
from engine.notifier import Notifier
from tests.conftest import OPERATOR
from tests.serve_process import free_port

PASSWORD = "mail-pa55-word-xyz"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


class Inbox:
    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 Message accepted"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"govcon" and auth_data.password == \
        PASSWORD.encode()
    return AuthResult(success=ok)


@pytest.fixture
def smtp_server(certificate):
    import ssl
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    started = []

    def start(*, refuse: bool = False, starttls: bool = True) -> tuple[Inbox, int]:
        inbox, port = Inbox(refuse), free_port()
        options = dict(tls_context=context, require_starttls=True, auth_require_tls=True) if starttls else \
            dict(auth_require_tls=False)
        controller = Controller(inbox, hostname="127.0.0.1", port=port, authenticator=authenticator,
                                auth_required=starttls, **options)
        controller.start()
        started.append(controller)
        return inbox, port
    yield start
    for c in started:
        c.stop()


def mail_sink(port: int, cert: Path, **more) -> list:
    entry = {"name": "stakeholders", "type": "smtp", "url": f"smtp://127.0.0.1:{port}", "from": "govcon@example.org",
             "to": ["ops@example.org", "cto@example.org"], "username": "govcon",
             "password_env": "GOVCON_SMTP_TEST_PASSWORD", "ca_file": str(cert), "timeout": 5, **more}
    return load_sinks({"sinks": [entry]})


def governance(store, clock, sinks) -> Governance:
    g = Governance(store, clock, sinks=sinks)
    g.init_store(OPERATOR, phase_started=clock.now() - timedelta(days=200))
    g.notifier = Notifier(store, clock, sinks, max_attempts=3, base_backoff=1.0, max_backoff=5.0)
    return g


def test_the_weekly_report_is_mailed_as_text_and_html(store, clock, smtp_server, certificate, monkeypatch, caplog):
    monkeypatch.setenv("GOVCON_SMTP_TEST_PASSWORD", PASSWORD)
    inbox, port = smtp_server()
    gov = governance(store, clock, mail_sink(port, certificate[0]))
    caplog.set_level(logging.DEBUG)
    report = gov.cycle.run(OPERATOR)
    [row] = gov.outbox.list(statuses=("pending",))
    assert row["sink"] == "stakeholders" and report["id"] in row["title"]
    assert gov.notifier.deliver_due().sent == 1
    [message] = inbox.messages
    assert inbox.envelopes == [("govcon@example.org", ["ops@example.org", "cto@example.org"])]
    assert report["id"] in message["Subject"] and message["To"] == "ops@example.org, cto@example.org"
    assert message["Message-ID"].startswith("<govcon-") and message["Message-ID"].endswith("@govcon>")
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert f"# Governance report {report['id']}" in text
    stored = gov.reports.latest()["markdown"]  # the report as stored, line for line (mail may trim line ends)
    assert [line.rstrip() for line in text.strip().splitlines()] == \
        [line.rstrip() for line in stored.strip().splitlines()]
    assert "<table>" in html and "<h1>" in html
    assert PASSWORD not in caplog.text
    assert all(PASSWORD not in str(r.get("lastError")) for r in gov.outbox.list(statuses=("sent", "pending", "dead")))


def test_alerts_go_by_mail_only_when_the_sink_asks(store, clock, smtp_server, certificate, monkeypatch):
    monkeypatch.setenv("GOVCON_SMTP_TEST_PASSWORD", PASSWORD)
    inbox, port = smtp_server()
    gov = governance(store, clock, mail_sink(port, certificate[0], severities=["critical"], reports=False))
    gov.cycle.run(OPERATOR)  # reports = false: no mail
    gov.grant_role(OPERATOR, "dave", "on-call")
    gov.overrides.engage("dave", "INC-7 runaway restarts")
    gov.notifier.deliver_due()
    subjects = [m["Subject"] for m in inbox.messages]
    assert len(subjects) == 1 and subjects[0].startswith("[CRITICAL]") and "kill switch" in subjects[0].lower()


def test_a_refusing_server_is_retried_then_dead_lettered(store, clock, smtp_server, certificate, monkeypatch):
    monkeypatch.setenv("GOVCON_SMTP_TEST_PASSWORD", PASSWORD)
    _inbox, port = smtp_server(refuse=True)
    gov = governance(store, clock, mail_sink(port, certificate[0]))
    gov.cycle.run(OPERATOR)
    assert gov.notifier.deliver_due().failed == 1
    [row] = gov.outbox.list(statuses=("pending",))
    assert "550" in row["lastError"] and row["attempts"] == 1
    for _ in range(2):
        clock.advance(timedelta(seconds=10))
        gov.notifier.deliver_due()
    [dead] = gov.outbox.list(statuses=("dead",))
    assert dead["attempts"] == 3 and "gave up after 3 attempts" in dead["lastError"]


def test_a_server_without_starttls_gets_nothing(store, clock, smtp_server, certificate, monkeypatch):
    monkeypatch.setenv("GOVCON_SMTP_TEST_PASSWORD", PASSWORD)
    inbox, port = smtp_server(starttls=False)
    gov = governance(store, clock, mail_sink(port, certificate[0]))
    gov.cycle.run(OPERATOR)
    assert gov.notifier.deliver_due().failed == 1
    [row] = gov.outbox.list(statuses=("pending",))
    assert "does not offer STARTTLS" in row["lastError"] and inbox.messages == []


def test_a_missing_password_is_dead_at_once_naming_the_variable(store, clock, smtp_server, certificate, monkeypatch):
    monkeypatch.delenv("GOVCON_SMTP_TEST_PASSWORD", raising=False)
    _inbox, port = smtp_server()
    gov = governance(store, clock, mail_sink(port, certificate[0]))
    gov.cycle.run(OPERATOR)
    assert gov.notifier.deliver_due().dead == 1
    [dead] = gov.outbox.list(statuses=("dead",))
    assert "GOVCON_SMTP_TEST_PASSWORD" in dead["lastError"]


@pytest.mark.parametrize("bad, named", [
    ({"url": "https://mail.example.org"}, r"smtp:// \(STARTTLS\) or smtps://"),
    ({"from": "not an address"}, "from must be one mail address"),
    ({"to": []}, "to must be a list of 1 to 100"),
    ({"to": ["ops@example.org", "x"]}, "to has 'x'"),
    ({"password": "hunter2"}, "unknown field 'password'"),
    ({"password_env": "hunter2 secret"}, "password_env must name an environment variable"),
    # the service's own secrets are not mail passwords: an ops-lead could mail them to a server of theirs
    ({"password_env": "GOVCON_DATABASE_URL"}, "a sink reads only the variables set aside for mail passwords"),
    ({"password_env": "PGPASSWORD"}, "password_env must name an environment variable GOVCON_SMTP_"),
    ({"username": None, "password_env": "GOVCON_SMTP_X"}, "username and password_env go together"),
])
def test_a_bad_smtp_sink_is_refused_naming_the_field(bad, named):
    entry = {"name": "m", "type": "smtp", "url": "smtp://mail.example.org:587", "from": "g@example.org",
             "to": ["ops@example.org"], "username": "govcon", "password_env": "GOVCON_SMTP_PASSWORD", **bad}
    entry = {k: v for k, v in entry.items() if v is not None}
    with pytest.raises(InvalidInput, match=named) as refused:
        load_sinks({"sinks": [entry]})
    assert "hunter2" not in str(refused.value)


def test_a_stored_sink_naming_another_variable_is_never_read(store, clock, smtp_server, certificate, monkeypatch):
    """A sink stored before the rule (or written by hand) that names the store's URL variable: delivery refuses
    it, and the variable's value reaches neither the server nor the outbox."""
    import dataclasses
    secret = "postgresql+psycopg://govsvc:S3cretPgPass@127.0.0.1/govrt"
    monkeypatch.setenv("GOVCON_DATABASE_URL_COPY", secret)
    inbox, port = smtp_server()
    sink = dataclasses.replace(mail_sink(port, certificate[0])[0], password_env="GOVCON_DATABASE_URL_COPY")
    gov = governance(store, clock, [sink])
    gov.cycle.run(OPERATOR)
    assert gov.notifier.deliver_due().dead == 1
    [dead] = gov.outbox.list(statuses=("dead",))
    assert "is not a GOVCON_SMTP_… variable" in dead["lastError"] and secret not in dead["lastError"]
    assert inbox.messages == [] and secret not in repr(inbox.__dict__)
