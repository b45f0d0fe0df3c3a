"""Notifications (in-app, e-mail, webhook) react to engine events after commit. Built with the
escalation work; the engine does not depend on this package."""
