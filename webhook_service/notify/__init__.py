"""Downstream notifications: events about tasks, delivered to webhooks, Slack and email.

`payload` builds an event once; `sinks` chooses where it goes and makes one attempt at one sink;
`render` turns it into a Slack message or an email; `retry` says when to try again; `records` is a
delivery (one event on its way to one sink); `deliveries` keeps them in Redis with every attempt; `jobs`
queues the delivery job inside the caller's transaction. The jobs themselves live in `workers.notify`.
"""
