"""Escalation: private, authenticated cases linked to the customer record."""
