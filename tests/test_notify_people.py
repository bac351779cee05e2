"""Notifications people read, end to end: a real SMTP server (aiosmtpd) and a Slack-like receiver on
loopback, fed by the service and real workers."""

from __future__ import annotations

import email
import email.policy
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from slack_sdk.models.blocks import Block

from tests import test_notify
from tests.support import free_port, wait_for
from tests.test_notify import Receiver, Stack, settled, submit

LONG_PROMPT = "A <small> fox & a crow " + "walk slowly through deep fresh snow at dawn, " * 8
REASON = "the model could not animate this image"
# What a client could put in a prompt to mislead a reader: a terminal colour, a reversed tail, a ping, a
# NUL (which cuts a C string short: a mail tool or a log may show nothing after it) and a backspace
# (which a terminal obeys, erasing what came before).
HOSTILE_PROMPT = "a \x1b[31mcat\x00\x08\u202egnp.exe <!channel>"
REMOVED = ("\x1b", "\x00", "\x08", "\u202e")
SMTP_USER, SMTP_PASSWORD = "notify@example.com", "p@ss word/:%"


receiver, stack = test_notify.receiver, test_notify.stack  # the webhook tests' fixtures


@dataclass
class Mailbox:
    """aiosmtpd handler and authenticator: keeps every message and every login."""

    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    encrypted: list[bool] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        # session.ssl after STARTTLS; the transport's SSL object when TLS was there from the start
        self.encrypted.append(
            session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
        )
        return "250 Message accepted"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login.decode(), data.password.decode()))
        return AuthResult(success=(data.login.decode(), data.password.decode()) == (SMTP_USER, SMTP_PASSWORD))


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    controller = Controller(
        box, hostname="127.0.0.1", port=free_port(), authenticator=box.authenticate, auth_require_tls=False
    )
    controller.start()
    yield box, controller.port
    controller.stop()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1; the workers trust it through SSL_CERT_FILE."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return folder / "cert.pem", folder / "key.pem"


@pytest.mark.parametrize("scheme", ["smtp", "smtps"])
def test_email_goes_over_tls_starttls_for_smtp_and_from_the_start_for_smtps(
    stack: Stack, simulator, certificate: tuple[Path, Path], scheme: str
) -> None:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    box = Mailbox()
    # smtp:// must upgrade: this server refuses mail and logins before STARTTLS.
    tls = {"tls_context": context, "require_starttls": True} if scheme == "smtp" else {"ssl_context": context}
    auth = {"authenticator": box.authenticate, "auth_require_tls": scheme == "smtp"}
    controller = Controller(box, hostname="127.0.0.1", port=free_port(), **auth, **tls)
    controller.start()
    try:
        service = stack.start(
            SMTP_URL=f"{scheme}://notify%40example.com:p%40ss%20word%2F%3A%25@127.0.0.1:{controller.port}",
            NOTIFY_EMAIL_FROM="kling@example.com",
            NOTIFY_EMAIL_TO="ops@example.com",
            SSL_CERT_FILE=str(cert),
        )
        submit(service, simulator, f"tls-{scheme}", status="failed", prompt="a cat")
        (found,) = settled(service, f"tls-{scheme}")
        assert found["status"] == "delivered", found
        assert box.encrypted == [True] and box.logins == [(SMTP_USER, SMTP_PASSWORD)]
    finally:
        controller.stop()


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    markup = message.get_body(("html",))
    assert text is not None and markup is not None
    return text.get_content(), markup.get_content()


def test_email_has_both_parts_the_link_and_the_reason(stack: Stack, simulator, mailbox) -> None:
    box, port = mailbox
    quoted = "notify%40example.com:p%40ss%20word%2F%3A%25"  # the URL's user and password, URL-encoded
    service = stack.start(
        SMTP_URL=f"smtp://{quoted}@127.0.0.1:{port}",
        NOTIFY_EMAIL_FROM="Kling videos <kling@example.com>",
        NOTIFY_EMAIL_TO="ops@example.com,dev@example.com",
    )
    submit(service, simulator, "mail-ok", prompt=LONG_PROMPT)
    submit(service, simulator, "mail-bad", status="failed", prompt=HOSTILE_PROMPT)

    wait_for(lambda: len(box.messages) == 2, timeout=20, what="two emails")
    assert box.logins[0] == (SMTP_USER, SMTP_PASSWORD)
    by_subject = {message["Subject"]: (sender, to, message) for sender, to, message in box.messages}
    ok = next(m for s, (_, _, m) in by_subject.items() if s.startswith("Video ready: "))
    bad = next(m for s, (_, _, m) in by_subject.items() if s.startswith("Task failed: "))
    sender, recipients, _ = by_subject[ok["Subject"]]
    assert sender == "kling@example.com" and recipients == ["ops@example.com", "dev@example.com"]
    assert ok.get_content_type() == "multipart/alternative"

    text, markup = parts(ok)
    link = service.http.get("/v1/tasks/mail-ok").json()["data"]["archived_videos"][0]["url"]
    assert link in text and f'href="{link}"' in markup
    assert "A <small> fox & a crow" in text and "A &lt;small&gt; fox &amp; a crow" in markup
    assert "…" in text and "Reason" not in text
    (found,) = settled(service, "mail-ok")
    assert ok["Message-ID"] == f"<{found['event_id']}@example.com>"

    text, markup = parts(bad)
    assert REASON in text and REASON in markup
    assert bad["Subject"] == "Task failed: a [31mcatgnp.exe <!channel>"
    for part in (*parts(bad), bad["Subject"]):
        assert not [c for c in REMOVED if c in part], part


def test_slack_message_is_valid_block_kit_with_what_a_person_needs(
    stack: Stack, simulator, receiver: Receiver
) -> None:
    service = stack.start(SLACK_WEBHOOK_URL=receiver.script("/slack"))
    submit(service, simulator, "slack-ok", prompt=LONG_PROMPT, model_name="kling-v2-master", duration="5")
    submit(service, simulator, "slack-bad", status="failed", prompt=HOSTILE_PROMPT)

    settled(service, "slack-ok")
    settled(service, "slack-bad")
    messages = {m.json["text"].split(":")[0]: m.json for m in receiver.received("/slack")}
    assert set(messages) == {"🎬 Video ready", "❌ Task failed"}
    for message in messages.values():
        for block in message["blocks"]:
            Block.parse(block).validate_json()  # raises on what Slack would refuse (lengths, shapes)

    ok = messages["🎬 Video ready"]["blocks"]
    assert [b["type"] for b in ok] == ["header", "section", "section", "actions", "context"]
    prompt = ok[1]["text"]["text"]
    assert prompt.startswith("> A &lt;small&gt; fox &amp; a crow") and prompt.endswith("…")
    fields = {f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in ok[2]["fields"]}
    assert fields["*Model*"] == "kling-v2-master" and fields["*Status*"] == "succeed, archived"
    assert fields["*Video length*"].endswith(" s") and fields["*Took*"].endswith(" s")
    link = service.http.get("/v1/tasks/slack-ok").json()["data"]["archived_videos"][0]["url"]
    assert ok[3]["elements"][0]["url"] == link

    assert messages["🎬 Video ready"]["text"].startswith("🎬 Video ready: A &lt;small&gt; fox &amp; a crow")
    # The top-level text (what notifications and old clients show) is escaped and cleaned like the blocks.
    assert messages["❌ Task failed"]["text"] == "❌ Task failed: a [31mcatgnp.exe &lt;!channel&gt;"
    for message in messages.values():  # anywhere in what Slack gets, escaped or not
        shown = json.dumps(message, ensure_ascii=False)
        assert not [c for c in REMOVED if c in shown], shown
    bad = messages["❌ Task failed"]["blocks"]
    assert bad[1]["text"]["text"] == "> a [31mcatgnp.exe &lt;!channel&gt;"
    assert any(REASON in b.get("text", {}).get("text", "") for b in bad)
    assert "actions" not in [b["type"] for b in bad]  # no video to link to
