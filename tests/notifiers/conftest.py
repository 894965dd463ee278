from __future__ import annotations

from tests.notifiers.receiver import webhook_receiver
from tests.services.smtp import smtp_server

__all__ = ["smtp_server", "webhook_receiver"]
