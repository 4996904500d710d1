"""Pluggable identity verifiers: how a one-time code reaches the customer on record.

A verifier only delivers; generating, hashing, checking and limiting codes is
:mod:`escalation.verification`'s job, identical for every verifier. The default sends the code to
the e-mail address on the customer record, never to an address the visitor typed.
"""

from __future__ import annotations

import logging
from email.message import EmailMessage
from typing import Any, Protocol

import aiosmtplib

from models import Customer

log = logging.getLogger("socialcare.escalation.verify")


class Verifier(Protocol):
    """Delivers a one-time code to a contact point on the customer record."""

    channel: str  # "email", "sms", ...

    def can_verify(self, customer: Customer) -> bool: ...

    def hint(self, customer: Customer) -> str:
        """The destination, masked, to tell the customer where to look."""
        ...

    async def deliver(self, customer: Customer, code: str, ttl_minutes: float) -> None: ...


def mask_email(address: str) -> str:
    """``m•••@e•••.com``: enough for the owner to recognise, too little for anyone else."""
    local, _, domain = address.partition("@")
    host, dot, tld = domain.rpartition(".")
    if not host:
        host, tld, dot = domain, "", ""
    return f"{local[:1]}•••@{host[:1]}•••{dot}{tld}"


class EmailCodeVerifier:
    """Sends the code by e-mail (aiosmtplib) to the address on the customer record."""

    channel = "email"

    def __init__(self, settings: Any) -> None:
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.username = settings.smtp_username
        self.password = settings.secret("smtp_password")
        self.sender = settings.smtp_from
        self.start_tls = settings.smtp_starttls
        self.timeout = settings.smtp_timeout_seconds

    def can_verify(self, customer: Customer) -> bool:
        return bool(customer.email and "@" in customer.email)

    def hint(self, customer: Customer) -> str:
        return mask_email(customer.email or "")

    def message(self, customer: Customer, code: str, ttl_minutes: float) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = customer.email
        msg["Subject"] = "Your verification code"
        msg.set_content(
            f"Hello {customer.name},\n\n"
            f"Your verification code is {code}. It expires in {ttl_minutes:g} minutes.\n\n"
            "Enter it on the secure page our care team sent you. We will never ask you for this code "
            "in public or by phone. If you did not ask for it, you can ignore this e-mail.\n"
        )
        return msg

    async def deliver(self, customer: Customer, code: str, ttl_minutes: float) -> None:
        await aiosmtplib.send(
            self.message(customer, code, ttl_minutes), hostname=self.host, port=self.port,
            username=self.username, password=self.password, start_tls=self.start_tls, timeout=self.timeout,
        )


def build_verifier(settings: Any) -> Verifier:
    return EmailCodeVerifier(settings)
