"""Delivering duban's notifications: message templates per event and language, the channels
(in-app, e-mail over SMTP, webhook), and the outbox that sends after commit with retries.

The engine writes what is to be said (engine.notify) in the transaction that causes it; this
package renders and sends it, and never writes workflow state."""
