from tests.notifications.receivers import smtp_server, webhook_server

__all__ = ["smtp_server", "webhook_server"]
