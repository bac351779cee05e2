"""Events as people read them: a Slack Block Kit message and a two-part email.

Both say the same few things in the same order: what happened, the prompt (shortened), status, model,
how long the video is and how long it took, the link to the video and, when something failed, why. An
image task's say "image" where a video task's say "video": how many images, and a link to the first.
An `endpoint.disabled` event says which endpoint of which tenant, why, and how many deliveries became
dead letters, with a link to the dashboard's endpoints page. Everything comes from the stored event,
so a retried message is the same message.

Much of it is what a client sent (the prompt, its external_task_id) or what Kling said (a failure's
reason), so every value is cleaned before it reaches a person: control characters go (a terminal
escape, a NUL that truncates a header), and so do bidi overrides and isolates, which can make text
read differently from what it says (a file name or link shown backwards). Slack's mrkdwn is escaped
everywhere, `text` included, so a client cannot mention @channel or forge a link.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, fields, replace
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any
from urllib.parse import quote

from webhook_service.domain.events import ENDPOINT_DISABLED, Event
from webhook_service.domain.task_types import TASK_TYPES, Output
from webhook_service.redaction import url_without_secrets

PROMPT_CHARS = 200  # enough to recognise a task; Slack's and mail clients' previews cut earlier anyway
SUBJECT_PROMPT_CHARS = 60

_TITLES = {
    "task.submitted": ("⏳", "Task submitted"),
    "task.processing": ("⚙️", "Video in progress"),
    "task.succeeded": ("✅", "Video generated"),
    "task.failed": ("❌", "Task failed"),
    "task.archived": ("🎬", "Video ready"),
    "task.archive_failed": ("⚠️", "Archiving failed"),
    "task.expired": ("⌛", "Task expired"),
    ENDPOINT_DISABLED: ("🚫", "Endpoint disabled"),
}
# What an image task's messages say instead.
_IMAGE_TITLES = {
    "task.processing": "Image in progress",
    "task.succeeded": "Image generated",
    "task.archived": "Image ready",
}
_FAILURES = frozenset({"task.failed", "task.archive_failed", "task.expired"})
# C0 controls but tab and newline, DEL, C1 controls, and the bidi embeddings, overrides and isolates.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean(text: str) -> str:
    return _UNSAFE.sub("", text)


@dataclass(frozen=True)
class Summary:
    emoji: str
    title: str
    prompt: str  # for an endpoint event: what happened to it, in a sentence
    rows: tuple[tuple[str, str], ...]
    video_url: str | None
    reason: str | None
    subject: str  # "Task" or "Endpoint"
    subject_id: str
    subject_url: str
    event_type: str
    event_id: str
    watch: str = "Watch the video"  # the link's words


def summarise(event: Event, base_url: str) -> Summary:
    """What a message says, every text in it cleaned (see the module's docstring)."""
    s = _endpoint_summary(event, base_url) if event.type == ENDPOINT_DISABLED else _summary(event, base_url)
    cleaned = {f.name: clean(v) for f in fields(s) if isinstance(v := getattr(s, f.name), str)}
    rows = tuple((clean(name), clean(value)) for name, value in s.rows)
    return replace(s, **cleaned, rows=rows)


def _summary(event: Event, base_url: str) -> Summary:
    data = event.data
    emoji, title = _TITLES.get(event.type, ("🔔", event.type))
    kind = TASK_TYPES.get(str(data.get("type")))
    images = kind is not None and kind.output is Output.IMAGE
    if images:
        emoji, title = ("🖼️" if event.type == "task.archived" else emoji), _IMAGE_TITLES.get(event.type, title)
    status = str(data.get("status", ""))
    if data.get("archive_state"):
        status = f"{status}, {data['archive_state']}"
    return Summary(
        emoji=emoji,
        title=title,
        prompt=shorten(clean(event.prompt), PROMPT_CHARS) or "(no prompt)",
        rows=(
            ("Status", status),
            ("Model", str(data.get("model_name") or "?")),
            ("Images", _image_count(data)) if images else ("Video length", _video_length(data)),
            ("Took", _took(data)),
        ),
        video_url=_image_url(data) if images else _video_url(data),
        reason=_reason(data) if event.type in _FAILURES else None,
        subject="Task",
        subject_id=event.external_task_id,
        subject_url=f"{base_url}/v1/tasks/{quote(event.external_task_id, safe='')}",
        event_type=event.type,
        event_id=event.id,
        watch="See the image" if images else "Watch the video",
    )


def _endpoint_summary(event: Event, base_url: str) -> Summary:
    """The endpoint's URL without its query, user or fragment: a receiver's token often lives there,
    and this message goes to a chat channel or a mailbox."""
    data = event.data
    emoji, title = _TITLES[ENDPOINT_DISABLED]
    shown = url_without_secrets(str(data.get("url") or ""))
    tenant = str(data.get("tenant") or "?")
    reason = {"gone": "it answered 410 Gone", "failing": "it failed without a single success for too long"}
    return Summary(
        emoji=emoji,
        title=title,
        prompt=shorten(f"Deliveries to {shown} (tenant {tenant}) are stopped.", PROMPT_CHARS),
        rows=(
            ("Tenant", tenant),
            ("Dead letters", str(data.get("dead_letters", 0))),
            ("Description", shorten(str(data.get("description") or "—"), 80)),
        ),
        video_url=None,
        reason=reason.get(str(data.get("disabled_reason")), str(data.get("disabled_reason") or "unknown")),
        subject="Endpoint",
        subject_id=str(data.get("id") or "?"),
        subject_url=f"{base_url}/endpoints",
        event_type=event.type,
        event_id=event.id,
    )


def shorten(text: str, limit: int) -> str:
    """`text` on one line, its runs of whitespace one space, cut to `limit` characters with an ellipsis
    (the dashboard's `shorten` filter too)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _video_url(data: dict[str, Any]) -> str | None:
    """The archive's link when there is one (it lasts); otherwise Kling's (it expires)."""
    for video in data.get("archived_videos") or []:
        if video.get("kind") == "video" and video.get("url"):
            return str(video["url"])
    for video in (data.get("task_result") or {}).get("videos") or []:
        if video.get("url"):
            return str(video["url"])
    return None


def _image_url(data: dict[str, Any]) -> str | None:
    """The first image: the archive's link when there is one, otherwise Kling's."""
    for image in [
        *(data.get("archived_images") or []),
        *((data.get("task_result") or {}).get("images") or []),
    ]:
        if isinstance(image, dict) and image.get("url"):
            return str(image["url"])
    return None


def _image_count(data: dict[str, Any]) -> str:
    images = (data.get("task_result") or {}).get("images")
    return str(len(images)) if isinstance(images, list) else "—"


def _video_length(data: dict[str, Any]) -> str:
    videos = (data.get("task_result") or {}).get("videos") or []
    try:
        return f"{float(videos[0]['duration']):g} s"
    except (IndexError, KeyError, TypeError, ValueError):
        return "—"


def _took(data: dict[str, Any]) -> str:
    """From the task's creation to its last change: what a person waiting for it experienced."""
    start, end = data.get("created_at"), data.get("updated_at")
    if not isinstance(start, int) or not isinstance(end, int) or end < start:
        return "—"
    seconds = round((end - start) / 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def _reason(data: dict[str, Any]) -> str:
    for detail in (data.get("archive_error"), data.get("error")):
        if isinstance(detail, dict) and detail.get("message"):
            code = detail.get("reason") or detail.get("code")
            return f"{detail['message']} ({code})" if code else str(detail["message"])
    return str(data.get("status_msg") or "no reason was given")


def _mrkdwn(text: str) -> str:
    """Slack's mrkdwn needs only these three escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(event: Event, base_url: str) -> dict[str, Any]:
    """An incoming-webhook body: Block Kit blocks, and `text` for notifications and old clients."""
    s = summarise(event, base_url)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{s.emoji} {s.title}", "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"> {_mrkdwn(s.prompt)}"}},
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": f"*{name}*\n{_mrkdwn(value)}"} for name, value in s.rows],
        },
    ]
    if s.reason:
        reason = shorten(s.reason, 500)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Reason:* {_mrkdwn(reason)}"}})
    if s.video_url:
        button = {"type": "button", "text": {"type": "plain_text", "text": s.watch}}
        blocks.append({"type": "actions", "elements": [{**button, "url": s.video_url, "style": "primary"}]})
    context = f"{s.subject} <{s.subject_url}|{_mrkdwn(s.subject_id)}> · `{s.event_type}`"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return {"text": f"{s.emoji} {_mrkdwn(s.title)}: {_mrkdwn(s.prompt)}", "blocks": blocks}


def email_message(event: Event, base_url: str, sender: str, recipients: tuple[str, ...]) -> EmailMessage:
    """Plain text and HTML alternatives; the Message-ID is the event's, so a resent mail is the same mail."""
    s = summarise(event, base_url)
    message = EmailMessage()
    message["Subject"] = f"{s.title}: {shorten(s.prompt, SUBJECT_PROMPT_CHARS)}"
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(localtime=False, usegmt=True)
    domain = sender.rpartition("@")[2].strip("> ") or "kling-webhook-service"
    message["Message-ID"] = f"<{event.id}@{domain}>"
    message.set_content(_text_body(s))
    message.add_alternative(_html_body(s), subtype="html")
    return message


def _text_body(s: Summary) -> str:
    head = f"Prompt: {s.prompt}" if s.subject == "Task" else s.prompt
    lines = [f"{s.title}", "", head, *(f"{name}: {value}" for name, value in s.rows)]
    if s.reason:
        lines.append(f"Reason: {s.reason}")
    lines.append("")
    if s.video_url:
        lines.append(f"{s.watch}: {s.video_url}")
    lines += [f"{s.subject} {s.subject_id}: {s.subject_url}", f"Event: {s.event_type} ({s.event_id})", ""]
    return "\n".join(lines)


def _html_body(s: Summary) -> str:
    e = html.escape
    rows = "".join(
        f'<tr><td style="padding:2px 12px 2px 0;color:#666">{e(name)}</td><td>{e(value)}</td></tr>'
        for name, value in s.rows
    )
    reason = f'<p style="color:#b00020"><strong>Reason:</strong> {e(s.reason)}</p>' if s.reason else ""
    link = (
        f'<p><a href="{e(s.video_url)}" style="background:#1a73e8;color:#fff;padding:8px 14px;'
        f'border-radius:4px;text-decoration:none">{e(s.watch)}</a></p>'
        if s.video_url
        else ""
    )
    return (
        f'<!doctype html><html><body style="font-family:sans-serif;line-height:1.4">'
        f"<h2>{e(s.emoji)} {e(s.title)}</h2>"
        f'<blockquote style="margin:0 0 12px;color:#333">{e(s.prompt)}</blockquote>'
        f"<table>{rows}</table>{reason}{link}"
        f'<p style="color:#666;font-size:small">{e(s.subject)} '
        f'<a href="{e(s.subject_url)}">{e(s.subject_id)}</a>'
        f" · {e(s.event_type)} · {e(s.event_id)}</p></body></html>"
    )
