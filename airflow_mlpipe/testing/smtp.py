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
        with socket.socket() as probe:  # aiosmtpd cannot report the port it got for port=0
            probe.bind((host, 0))
            self.port: int = probe.getsockname()[1]
        self.controller = Controller(self, hostname=host, port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's hook
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
    for part in message.walk():
        if part.get_content_type() == "text/html":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode()
    raise ValueError("the e-mail has no HTML part")
