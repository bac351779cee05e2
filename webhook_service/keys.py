"""Every Redis key the service writes, under one prefix (`kws:`).

The prefix keeps key sets apart within one deployment: each resource pack's submission keys (below) and
the tests' own. It does not let several deployments share a Redis: no setting chooses it, and RQ's
queues and job ids (jobs.py) are the same under every prefix, so one deployment's workers would run the
other's jobs. Give each deployment its own Redis, or its own database of one.

Tasks (domain/store.py):
- `task:<external_task_id>`          the task record (JSON)
- `task:<external_task_id>:request`  the request body as the client sent it, each Base64 image
                                     replaced by a reference to its copy in the archive (inputs.py)
- `task:<external_task_id>:history`  every callback and status change, oldest first (JSON list items)
- `task-id:<task_id>`                Kling's task id -> external_task_id
- `tasks`                            sorted set of external_task_ids by creation time (newest-first lists)
- `tasks:tenant:<tenant>`            the same, for one tenant's tasks (domain/tenants.py)
- `video:<video_id>`                 a Kling video id -> the external_task_id of the task that made it
                                     (written when the task's result names it; domain/video_extend.py)
- `video:<video_id>:extensions`      set of the external_task_ids of the tasks extending that video
                                     (video-extend); each leaves with its task, and the set with the video's
- `tenant-backfill`                  how far the one-time walk that puts tasks recorded before tenants
                                     (and their deliveries) into the default tenant's indexes has got

Submission (domain/admission.py):
- `submit-queue`       sorted set of the default tenant's external_task_ids waiting to be sent, by
                       arrival (µs): every task's, before tenants had queues of their own
- `submit-queue:<tenant>` the same for another tenant's tasks
- `submit-tenants`     sorted set of the tenants with tasks waiting, by their pass in the weighted
                       round-robin (negative: joined since the last turn, its pass not yet given)
- `submit-passes`      hash: tenant -> its pass when its queue last emptied (a tenant that comes back at
                       once has skipped no turns, and renews no credit)
- `submit-vtime`       the round-robin's virtual time: the largest pass a turn was taken at (a tenant
                       joining after being idle starts at most a credit of two turnovers behind it)
- `slots`              sorted set of external_task_ids holding an upstream slot (score: their arrival,
                       so a task put back takes its old place in the queue)
- `slot-tenants`       hash: a slot's task -> its tenant, for every tenant but the default (each tenant's
                       open tasks, for its max_open)
- `submit-pause-until` ms timestamp before which nothing is sent (after 1302/1303/5001), and its level
- `dispatch-wanted`    a dispatch job is queued and has not started (jobs.wake_dispatch): wake-ups
                       meanwhile need no job of their own (a Redis TTL of 30 s at most)
- `slot-taken-at`      hash: when each task still `queued` was taken from the queue to be sent; a
                       sender killed mid-send leaves it behind, and reconciliation puts the task back
- `queue-units`        hash: a task that needs more than one slot (an image task asking for `n`
                       images) -> how many, from its arrival until it is final
- `slot-units`         the same, for the tasks among them that hold their slots
Each resource pack (video, image, try-on) has its own set of these submission keys: the video pack's
are the names above (those every task used before packs), the image pack's the same under
`pack:image:`, the try-on pack's under `pack:tryon:` (`Keys.pack`).

Tenants (domain/tenants.py; written by `flask clients`, domain/clients.py):
- `tenant-weights`     hash: tenant -> its weight in the submission queue's round-robin (absent: 1)
- `tenant-max-open`    hash: tenant -> the most tasks it may have upstream at once, in all packs together
                       (absent: no limit)

Managed clients (domain/clients.py, `flask clients`):
- `clients`                       set of the managed clients' names (each is its tenant); while it
                                  exists, clients must authenticate even with no keys in the environment
- `client:<name>`                 hash: whether the client is an admin, when it was created
- `client:<name>:keys`            set of the SHA-256 of each of its keys, current or rotated out
- `client:<name>:access-keys`     set of its JWT access keys (AK), current or rotated out
- `client-key:<sha256>`           a key's lookup entry: the tenant and admin flag it grants (JSON); a
                                  rotated-out key's has a Redis TTL of the grace period: it removes itself
- `client-access-key:<AK>`        an AK's lookup entry: the same, and its secret key (SK) encrypted with
                                  a key derived from SECRET_KEY; rotated out, a TTL too

Usage (domain/usage.py):
- `usage:<tenant>:<YYYY-MM-DD>`  hash: the tenant's tasks that reached a final status, counted on the UTC
                                 day they were created, by `<status>:<model>` (tasks) and `units:<model>`
                                 (Kling's final_unit_deduction, in thousandths); a Redis TTL of 400 days
- `usage-tenants`                set of the tenants that have usage (its TTL renewed with every write)

Activity (domain/activity.py), the Tasks page's last 24 hours:
- `activity:<tenant>:<YYYY-MM-DDTHH>`  hash: in that UTC hour, the tenant's tasks that reached a final
                                       status (`task:<status>`) and its delivery attempts
                                       (`attempt:delivered`, `attempt:failed`); a Redis TTL of 2 days
- `activity-tenants`                   set of the tenants that have activity (the same TTL, renewed)

Reconciliation (domain/open_tasks.py, domain/reconcile.py):
- `open`               sorted set of upstream-open tasks by when to check on them next
- `poll-count`         hash: polls in a row that brought nothing new, per open task
- `reconcile-lock`     the one pass running; `reconcile-passes` when the last passes ran

Retention (domain/retention.py):
- `retention`          sorted set of finished tasks by when they may be removed (checked again then)
- `retention:taskless` sorted set of the events that belong to no task (`endpoint.disabled`) by
                       creation time: each leaves, with its deliveries, TASK_RETENTION_S later once
                       they are all settled
- `retention-backfill` how far the one-time walk over tasks recorded before retention existed has got
- `removed:<id>`       a removed task's notice, by external_task_id and by each task_id, kept (with a
                       Redis TTL) for another retention period so a query can say what happened

Notifications (notify/deliveries.py):
- `event:<event_id>`                     the event, written once: its fields (type, task, tenant, prompt)
                                         as a line of JSON, then the payload as it is sent
- `event:<event_id>:deliveries`          set: the deliveries of an event that belongs to no task
- `delivery:<id>`                        the delivery record (JSON): O(1) by id
- `delivery:<id>:attempts`               its attempts, oldest first (JSON list items)
- `deliveries`                           sorted set of every delivery id by creation time
- `deliveries:<status>`                  sorted set of the ids in that status, by when they entered it
- `deliveries:task:<external_task_id>`   set of the task's delivery ids
- `deliveries:tenant:<tenant>[:<status>]` the same two indexes for one tenant's deliveries
- `deliveries:endpoint:<id>[:<status>]`  and for the deliveries to one of a tenant's endpoints
- `notify:disabled-endpoints`            hash: `tenant:<tenant> <url>` (a callback_url) or `operator <url>`
                                         (the operator's sinks) -> when and why that owner's deliveries
                                         to the URL were disabled (410 Gone); older fields are the URL
                                         alone, owned as their value says (notify/disabled_urls.py)
- `sink:<sk_id>:busy`                    the one attempt in flight at a sink that is not a tenant's
                                         endpoint (a callback_url, an operator's webhook, Slack, email),
                                         per tenant (notify/turns.py): as `endpoint:<id>:busy`
- `turns:<target>:waiting`               sorted set: the deliveries waiting their turn at a target (an
                                         endpoint's id, or a sink's `sk_` id) by when their event was
                                         raised; the target's drain job starts them (notify/drain.py)

Webhook endpoints (notify/endpoints.py), each tenant's own, managed by `/v1/endpoints`:
- `endpoint:<id>`                  hash: the endpoint (tenant, URL, event types, rate limit, whether
                                   enabled, when and why disabled), its signing secret and the one
                                   rotated out with its end (both encrypted with a key derived from
                                   SECRET_KEY), and since when it has failed without a success
- `endpoints`                      set of every endpoint's id
- `endpoints:tenant:<tenant>`      set of the tenant's endpoints' ids
- `endpoint:<id>:pending`          set of its pending deliveries (dead letters when it is disabled)
- `endpoint:<id>:attempts`         its last attempts, newest first (JSON list items), for the dashboard
- `endpoint:<id>:busy`             the one attempt at it in flight (per-endpoint concurrency 1): the
                                   job's id, with a Redis TTL of the longest an attempt can take
- `endpoint:<id>:testing`          the one test event ("Send test event") in flight: a random token,
                                   with a Redis TTL of the longest a test can take (notify/pinging.py)
- `endpoint:<id>:rate`             when its rate limit's bucket is full again (notify/turns.py: epoch
                                   ms), with a TTL of that moment
- `endpoint:<id>:activity:<YYYY-MM-DDTHH>`  hash: its attempts in that UTC hour, delivered or failed
                                   (domain/activity.py's pattern, the same TTL of 2 days)

Event log (notify/event_log.py), what `GET /v1/events` and `flask events tail` read:
- `events:<tenant>`                  stream: every event of the tenant's tasks and endpoints, in the
                                     order they were raised, whether or not a sink wanted it; the entry
                                     id is the cursor (XADD `*`, capped with MAXLEN ~ as a backstop)
- `task:<external_task_id>:events`   list: the ids of the task's entries in its tenant's stream, so
                                     retention removes them with the task (XDEL) without a scan
- `events-taskless`                  sorted set: the entries of no task (`endpoint.disabled`), as
                                     `<tenant> <entry id>`, by when they were recorded: each leaves
                                     TASK_RETENTION_S later

Face sessions (domain/ownership.py):
- `face-session:<session_id>`  the tenant identify-face answered this session to, the only one whose
                               advanced lip-sync may name it; a Redis TTL of the 24 hours Kling keeps a
                               session, so it removes itself (retention has nothing to prune)

Client authentication (web/auth_limit.py, web/dashboard/session.py):
- `auth-failures:<address>`  failed authentications from one client address in the current window
                             (a counter with a Redis TTL of the window: it removes itself)
- `dashboard-session:<id>`   a dashboard sign-in, alive while it exists: logout deletes it, and its
                             TTL is the session's absolute lifetime

RQ's own keys (`rq:...`) are RQ's: it has no prefix of its own to give them.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "kws:"


class Fixed:
    """A key that takes no argument, read as an attribute (`keys.tasks`): its name under the prefix of the
    Keys it is read from."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, keys: Keys, owner: type[Keys] | None = None) -> str:
        return f"{keys.prefix}{self.name}"


@dataclass(frozen=True)
class Keys:
    prefix: str = PREFIX

    # --- tasks ---
    tasks = Fixed("tasks")
    tenant_backfill = Fixed("tenant-backfill")

    def task(self, external_task_id: str) -> str:
        return f"{self.prefix}task:{external_task_id}"

    def task_request(self, external_task_id: str) -> str:
        return f"{self.prefix}task:{external_task_id}:request"

    def task_history(self, external_task_id: str) -> str:
        return f"{self.prefix}task:{external_task_id}:history"

    def task_id(self, task_id: str) -> str:
        return f"{self.prefix}task-id:{task_id}"

    def video(self, video_id: str) -> str:
        return f"{self.prefix}video:{video_id}"

    def video_extensions(self, video_id: str) -> str:
        return f"{self.prefix}video:{video_id}:extensions"

    def tenant_tasks(self, tenant: str) -> str:
        return f"{self.prefix}tasks:tenant:{tenant}"

    # --- submission ---
    submit_queue = Fixed("submit-queue")
    submit_tenants = Fixed("submit-tenants")
    submit_passes = Fixed("submit-passes")
    submit_vtime = Fixed("submit-vtime")
    slots = Fixed("slots")
    slot_tenants = Fixed("slot-tenants")
    pause_until = Fixed("submit-pause-until")
    pause_level = Fixed("submit-pause-level")
    slot_taken_at = Fixed("slot-taken-at")
    dispatch_wanted = Fixed("dispatch-wanted")
    queue_units = Fixed("queue-units")
    slot_units = Fixed("slot-units")

    def tenant_submit_queue(self, tenant: str) -> str:
        """A tenant's queue, the default tenant's excepted (`submit_queue`). The tenant's name ends the
        key: the submission script builds it from `tenant_submit_queue("")`."""
        return f"{self.prefix}submit-queue:{tenant}"

    def pack(self, pack: str) -> Keys:
        """The submission keys of one resource pack (the tenants' weights and limits are shared)."""
        return self if pack == "video" else Keys(f"{self.prefix}pack:{pack}:")

    # --- tenants ---
    tenant_weights = Fixed("tenant-weights")
    tenant_max_open = Fixed("tenant-max-open")

    # --- managed clients ---
    clients = Fixed("clients")

    def client(self, name: str) -> str:
        return f"{self.prefix}client:{name}"

    def client_keys(self, name: str) -> str:
        return f"{self.prefix}client:{name}:keys"

    def client_access_keys(self, name: str) -> str:
        return f"{self.prefix}client:{name}:access-keys"

    def client_key(self, key_hash: str) -> str:
        return f"{self.prefix}client-key:{key_hash}"

    def client_access_key(self, access_key: str) -> str:
        return f"{self.prefix}client-access-key:{access_key}"

    # --- usage ---
    usage_tenants = Fixed("usage-tenants")

    def usage(self, tenant: str, day: str) -> str:
        return f"{self.prefix}usage:{tenant}:{day}"

    # --- activity ---
    activity_tenants = Fixed("activity-tenants")

    def activity(self, tenant: str, hour: str) -> str:
        return f"{self.prefix}activity:{tenant}:{hour}"

    # --- reconciliation ---
    open = Fixed("open")
    poll_count = Fixed("poll-count")
    reconcile_lock = Fixed("reconcile-lock")
    reconcile_passes = Fixed("reconcile-passes")

    # --- retention ---
    retention = Fixed("retention")
    retention_taskless = Fixed("retention:taskless")
    retention_backfill = Fixed("retention-backfill")

    def removed(self, any_id: str) -> str:
        return f"{self.prefix}removed:{any_id}"

    # --- notifications ---
    disabled_endpoints = Fixed("notify:disabled-endpoints")

    def event(self, event_id: str) -> str:
        return f"{self.prefix}event:{event_id}"

    def event_deliveries(self, event_id: str) -> str:
        return f"{self.prefix}event:{event_id}:deliveries"

    def delivery(self, delivery_id: str) -> str:
        return f"{self.prefix}delivery:{delivery_id}"

    def delivery_attempts(self, delivery_id: str) -> str:
        return f"{self.prefix}delivery:{delivery_id}:attempts"

    def deliveries(self, status: str | None = None) -> str:
        """Every delivery by creation time, or those in `status` by when they entered it."""
        return f"{self.prefix}deliveries" + (f":{status}" if status else "")

    def tenant_deliveries(self, tenant: str, status: str | None = None) -> str:
        """One tenant's deliveries by creation time, or those in `status` by when they entered it."""
        return f"{self.prefix}deliveries:tenant:{tenant}" + (f":{status}" if status else "")

    def endpoint_deliveries(self, endpoint_id: str, status: str | None = None) -> str:
        return f"{self.prefix}deliveries:endpoint:{endpoint_id}" + (f":{status}" if status else "")

    @property
    def dead_letters(self) -> str:
        """The index of failed deliveries: `deliveries(status)` for status `failed`."""
        return self.deliveries("failed")

    def task_deliveries(self, external_task_id: str) -> str:
        return f"{self.prefix}deliveries:task:{external_task_id}"

    def sink_busy(self, sink_id: str) -> str:
        return f"{self.prefix}sink:{sink_id}:busy"

    def turn_waiting(self, target: str) -> str:
        return f"{self.prefix}turns:{target}:waiting"

    # --- webhook endpoints ---
    endpoints = Fixed("endpoints")

    def endpoint(self, endpoint_id: str) -> str:
        return f"{self.prefix}endpoint:{endpoint_id}"

    def tenant_endpoints(self, tenant: str) -> str:
        return f"{self.prefix}endpoints:tenant:{tenant}"

    def endpoint_pending(self, endpoint_id: str) -> str:
        return f"{self.prefix}endpoint:{endpoint_id}:pending"

    def endpoint_attempts(self, endpoint_id: str) -> str:
        return f"{self.prefix}endpoint:{endpoint_id}:attempts"

    def endpoint_busy(self, endpoint_id: str) -> str:
        return f"{self.prefix}endpoint:{endpoint_id}:busy"

    def endpoint_testing(self, endpoint_id: str) -> str:
        return f"{self.prefix}endpoint:{endpoint_id}:testing"

    def endpoint_rate(self, endpoint_id: str) -> str:
        return f"{self.prefix}endpoint:{endpoint_id}:rate"

    def endpoint_activity(self, endpoint_id: str, hour: str) -> str:
        return f"{self.prefix}endpoint:{endpoint_id}:activity:{hour}"

    # --- event log ---
    events_taskless = Fixed("events-taskless")

    def events(self, tenant: str) -> str:
        return f"{self.prefix}events:{tenant}"

    def task_events(self, external_task_id: str) -> str:
        return f"{self.prefix}task:{external_task_id}:events"

    # --- face sessions ---
    def face_session(self, session_id: str) -> str:
        return f"{self.prefix}face-session:{session_id}"

    # --- client authentication ---
    def auth_failures(self, address: str) -> str:
        return f"{self.prefix}auth-failures:{address}"

    def dashboard_session(self, session_id: str) -> str:
        return f"{self.prefix}dashboard-session:{session_id}"
