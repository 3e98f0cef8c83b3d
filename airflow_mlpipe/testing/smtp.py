"""A real SMTP server on loopback for testing failure e-mails (needs ``aiosmtpd``)."""

from __future__ import annotations

import email
import json
import socket
from email.message import Message
from typing import Any


class SmtpSink:
    """Keeps every message it receives; ``connection_env()`` points ``smtp_default`` at it.

    Use as a context manager, or call ``start()``/``stop()``.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        from aiosmtpd.controller import Controller

        self.host = host
        self.messages: list[tuple[list[str], Message]] = []
        #: Each message's bytes as received, in the same order (to parse with another policy).
        self.raw: list[bytes] = []
        with socket.socket() as probe:  # aiosmtpd cannot report the port it got for port=0
            probe.bind((host, 0))
            self.port: int = probe.getsockname()[1]
        self.controller = Controller(self, hostname=host, port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's hook
        self.raw.append(envelope.content)
        self.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 OK"

    def start(self) -> SmtpSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def connection_env(
        self, conn_id: str = "smtp_default", from_email: str = "mlpipe@example.com"
    ) -> dict[str, str]:
        """``AIRFLOW_CONN_<ID>`` for a plain-text connection to this server."""
        connection = {
            "conn_type": "smtp",
            "host": self.host,
            "port": self.port,
            "extra": {"disable_tls": True, "disable_ssl": True, "from_email": from_email, "timeout": 10},
        }
        return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(connection)}


def html_body(message: Message) -> str:
    """The HTML part of a received e-mail."""
    return part_body(message, "text/html")


def text_body(message: Message) -> str:
    """The plain-text part of a received e-mail (not an attachment)."""
    return part_body(message, "text/plain")


def part_body(message: Message, content_type: str) -> str:
    """The decoded body of the first part of ``content_type`` that is not an attachment."""
    for part in message.walk():
        if part.get_content_type() == content_type and part.get_content_disposition() != "attachment":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode(part.get_content_charset() or "utf-8")
    raise ValueError(f"the e-mail has no {content_type} part")
