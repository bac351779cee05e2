"""Downstream notifications: events about tasks, delivered to webhooks, Slack and email.

`routing` says which sinks want an event and raises it inside the change it reports; `payload` builds
the event once; `send` fans it out into deliveries and makes each attempt; `sinks` makes one attempt at
one sink; `render` turns an event into a Slack message or an email; `retry` says when to try again;
`records` is a delivery (one event on its way to one sink); `deliveries` keeps them in Redis with every
attempt. `endpoints` are the webhook endpoints tenants manage themselves; `turns` says when an attempt
at a sink may go (one at a time, at its rate, a task's events in order), and `drain` starts the ones
that waited; `disabling` turns an endpoint off when it is gone or has failed too long. The RQ jobs that
run `send` and `drain` are thin entry points in `workers/notify.py`.
"""
