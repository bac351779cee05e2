"""Kling's lip-sync endpoints, end to end: the older task type (`/v1/videos/lip-sync`), face
identification (`/v1/videos/identify-face`, synchronous, no task) and the advanced task type
(`/v1/videos/advanced-lip-sync`). For each: its validation (every problem at once, with paths and
hints), and through the simulator to what a user checks: Kling's answers unchanged, a video archived
with its sha256, Base64 audio in the archive's inputs/ (not in Redis) and sent to Kling byte for byte,
lookups by either id at the type's own path only, under / and /kling, and the CLI."""

from __future__ import annotations

import hashlib
import io
import json
import wave
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import test_task_types
from tests.conftest import Service
from tests.test_image_generation import run
from tests.test_image_types import found_at_its_own_path_only, message, problems
from tests.test_inputs import b64, sent_upstream, stored_request
from tests.test_task_types import archived
from tests.test_video_extend import make_parent
from webhook_service.domain.archive_layout import task_folder
from webhook_service.domain.audio import sniff_audio
from webhook_service.domain.body_rules import validate_body
from webhook_service.domain.lip_sync_rules import IDENTIFY_FACE
from webhook_service.domain.problems import RequestInvalid
from webhook_service.domain.task_types import TASK_TYPES, task_type

running = test_task_types.running  # the service and real workers, archiving at once

LIP_SYNC = "/v1/videos/lip-sync"
ADVANCED = "/v1/videos/advanced-lip-sync"
IDENTIFY = "/v1/videos/identify-face"
VIDEO_URL = "https://example.com/talk.mp4"
AUDIO_URL = "https://example.com/speech.mp3"
SUCCEED = {"steps": [{"status": "succeed", "delay": 0.2}]}


def speech_wav(seconds: float = 2.5) -> bytes:
    """A real WAV file (8 kHz, 16-bit mono), as a caller would send."""
    out = io.BytesIO()
    with wave.open(out, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(bytes(range(256)) * int(seconds * 8000 * 2 / 256))
    return out.getvalue()


WAV = speech_wav()
TEXT_INPUT = {"video_url": VIDEO_URL, "mode": "text2video", "text": "Hello there", "voice_id": "uk_man2"}
FACE = {"face_id": "0", "sound_start_time": 0, "sound_end_time": 2000, "sound_insert_time": 0}


def test_the_lip_sync_types_live_at_kling_paths() -> None:
    assert task_type("lip-sync").path == LIP_SYNC and task_type("lip-sync").output == "video"
    assert (
        task_type("advanced-lip-sync").path == ADVANCED and task_type("advanced-lip-sync").output == "video"
    )
    assert "identify-face" not in TASK_TYPES  # no task: answered at once


def test_full_lip_sync_bodies_of_either_mode_pass_unchanged() -> None:
    text = {
        "input": {**TEXT_INPUT, "text": "x" * 120, "voice_language": "en", "voice_speed": 2.0},
        "callback_url": "https://example.com/hook",
        "external_task_id": "ls-1",
    }
    assert task_type("lip-sync").validate(text) == text
    by_file = {
        "input": {"video_id": "8272", "mode": "audio2video", "audio_type": "file", "audio_file": b64(WAV)}
    }
    assert task_type("lip-sync").validate(by_file) == by_file
    by_url = {
        "input": {"video_id": "8272", "mode": "audio2video", "audio_type": "url", "audio_url": AUDIO_URL}
    }
    by_url["input"]["voice_language"] = (
        "zh"  # a setting of the voice: harmless with audio, one client sends it
    )
    assert task_type("lip-sync").validate(by_url) == by_url


def test_every_lip_sync_problem_is_reported_with_its_path_and_a_hint() -> None:
    body = {
        "input": {
            "video_id": "8272",
            "video_url": VIDEO_URL,  # both: Kling takes one
            "mode": "audio2video",
            "text": "hi",  # text mode's: the video would not say it
            "audio_type": "file",
            "audio_url": AUDIO_URL,  # audio_type says file
            "voice_speed": 1.25,  # one decimal place at most
            "voise_id": "x",
        },
        "model_name": "kling-v1",  # lip-sync has no model
        "watermark_info": {"enabled": True},
    }
    assert problems("lip-sync", body) == {
        ("input.video_url", "exclusive"),
        ("input.text", "requires"),
        ("input.audio_file", "missing"),
        ("input.audio_url", "requires"),
        ("input.voice_speed", "precision"),
        ("input.voise_id", "unknown_field"),
        ("model_name", "unknown_field"),
        ("watermark_info", "unknown_field"),
    }
    assert message("lip-sync", body, "input.voise_id") == "unknown field; did you mean 'voice_id'?"
    assert message("lip-sync", body, "input.audio_url") == 'only used when audio_type is "url": remove it'
    assert problems("lip-sync", {}) == {("input", "missing")}
    assert problems("lip-sync", {"input": {}}) == {("input.mode", "missing"), ("input.video_id", "missing")}
    assert problems("lip-sync", {"input": {"video_id": "1", "mode": "text2video"}}) == {
        ("input.text", "missing"),
        ("input.voice_id", "missing"),
    }
    assert problems("lip-sync", {"input": {"video_id": "1", "mode": "audio2video"}}) == {
        ("input.audio_type", "missing")
    }
    with_audio = {"input": {**TEXT_INPUT, "audio_type": "url", "audio_url": AUDIO_URL}}
    assert problems("lip-sync", with_audio) == {
        ("input.audio_type", "requires"),
        ("input.audio_url", "requires"),
    }


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"text": "x" * 121}, ("input.text", "too_long")),
        ({"text": ""}, ("input.text", "too_short")),
        ({"voice_speed": 0.7}, ("input.voice_speed", "range")),
        ({"voice_speed": 2.1}, ("input.voice_speed", "range")),
        ({"voice_speed": "1"}, ("input.voice_speed", "type")),
        ({"voice_language": "fr"}, ("input.voice_language", "enum")),
        ({"mode": "video2video"}, ("input.mode", "enum")),
        ({"video_url": "ftp://example.com/v.mp4"}, ("input.video_url", "format")),
        ({"voice_id": None}, ("input.voice_id", "type")),
    ],
)
def test_lip_sync_limits(changes: dict[str, Any], expected: tuple[str, str]) -> None:
    assert problems("lip-sync", {"input": {**TEXT_INPUT, **changes}}) == {expected}


def test_audio_is_checked_for_size_and_kind_as_kling_documents() -> None:
    def audio_file(value: str) -> set[tuple[str, str]]:
        body = {"input": {"video_id": "1", "mode": "audio2video", "audio_type": "file", "audio_file": value}}
        return problems("lip-sync", body)

    assert audio_file(b64(b"RIFF" + bytes(5 * 1024 * 1024))) == {("input.audio_file", "too_large")}
    assert audio_file(b64(b"\x89PNG\r\n\x1a\n" + bytes(100))) == {("input.audio_file", "format")}
    assert audio_file("data:audio/wav;base64," + b64(WAV)) == {("input.audio_file", "format")}
    assert audio_file(AUDIO_URL) == {("input.audio_file", "format")}  # a URL goes in audio_url
    assert sniff_audio(WAV[:12]) == ("audio/wav", "wav")
    assert sniff_audio(b"ID3\x04\x00" + bytes(7)) == ("audio/mpeg", "mp3")
    assert sniff_audio(b"\xff\xfb\x90\x00" + bytes(8)) == ("audio/mpeg", "mp3")  # an MP3 frame, no tags
    assert sniff_audio(b"\xff\xf1\x50\x80" + bytes(8)) == ("audio/aac", "aac")  # ADTS
    assert sniff_audio(b"\x00\x00\x00\x20ftypM4A ") == ("audio/mp4", "m4a")
    assert sniff_audio(b"OggS" + bytes(8)) is None


def test_identify_face_takes_exactly_one_video() -> None:
    assert validate_body(IDENTIFY_FACE, {"video_id": "8272"}) == {"video_id": "8272"}
    for body, expected in (
        ({}, {("video_id", "missing")}),
        ({"video_id": "1", "video_url": VIDEO_URL}, {("video_url", "exclusive")}),
        (
            {"video_url": "not a url", "callback_url": VIDEO_URL},
            {("video_url", "format"), ("callback_url", "unknown_field")},
        ),
    ):
        with pytest.raises(RequestInvalid) as caught:
            validate_body(IDENTIFY_FACE, body)
        assert {(p.field, p.code) for p in caught.value.problems} == expected


def test_a_full_advanced_lip_sync_body_passes_unchanged() -> None:
    body = {
        "session_id": "825465778199224380",
        "face_choose": [
            {
                **FACE,
                "sound_file": b64(WAV),
                "sound_start_time": 100,
                "sound_end_time": 60000,
                "sound_insert_time": 1000,
                "sound_volume": 2,
                "original_audio_volume": 0.25,
            }
        ],
        "watermark_info": {"enabled": False},
        "callback_url": "https://example.com/hook",
        "external_task_id": "als-1",
    }
    assert task_type("advanced-lip-sync").validate(body) == body
    by_id = {"session_id": "s", "face_choose": [{**FACE, "audio_id": "825451760499568680"}]}
    assert task_type("advanced-lip-sync").validate(by_id) == by_id
    by_url = {"session_id": "s", "face_choose": [{**FACE, "sound_file": AUDIO_URL}]}
    assert task_type("advanced-lip-sync").validate(by_url) == by_url


def test_every_advanced_lip_sync_problem_is_reported_with_its_path() -> None:
    body = {
        "session_id": "",
        "face_choose": [
            {
                "face_id": "0",
                "audio_id": "a",
                "sound_file": AUDIO_URL,  # both: Kling takes one
                "sound_start_time": 1000,
                "sound_end_time": 2500,  # a cut of 1.5 s: Kling keeps 2 s at least
                "sound_insert_time": -1,
                "sound_volume": 2.5,
                "original_audio_volume": "1",
                "sound_volme": 1,
            },
            {"sound_file": "data:audio/mpeg;base64,SUQz", "sound_start_time": 0.5, "sound_end_time": 61000},
        ],
        "model_name": "kling-v1",
    }
    assert problems("advanced-lip-sync", body) == {
        ("session_id", "too_short"),
        ("face_choose", "too_many"),  # one face per task, for now
        ("face_choose[0].sound_file", "exclusive"),
        ("face_choose[0].sound_end_time", "range"),
        ("face_choose[0].sound_insert_time", "range"),
        ("face_choose[0].sound_volume", "range"),
        ("face_choose[0].original_audio_volume", "type"),
        ("face_choose[0].sound_volme", "unknown_field"),
        ("face_choose[1].face_id", "missing"),
        ("face_choose[1].sound_file", "format"),
        ("face_choose[1].sound_start_time", "type"),
        ("face_choose[1].sound_end_time", "range"),  # past 60 s: Kling's longest audio
        ("face_choose[1].sound_insert_time", "missing"),
        ("model_name", "unknown_field"),
    }
    hint = message("advanced-lip-sync", body, "face_choose[0].sound_volme")
    assert hint.startswith("unknown field; did you mean 'sound_volume'")
    assert "2000 ms" in message("advanced-lip-sync", body, "face_choose[0].sound_end_time")
    assert problems("advanced-lip-sync", {}) == {("session_id", "missing"), ("face_choose", "missing")}
    assert problems("advanced-lip-sync", {"session_id": "s", "face_choose": []}) == {
        ("face_choose", "too_few")
    }
    assert problems("advanced-lip-sync", {"session_id": "s", "face_choose": [FACE]}) == {
        ("face_choose[0].sound_file", "missing")
    }
    new = {"session_id": "s", "face_choose": [{**FACE, "audio_id": "a"}], "new_field": 1}
    assert task_type("advanced-lip-sync").validate(new, extra_fields=frozenset({"new_field"})) == new


def test_an_invalid_lip_sync_request_is_refused_over_http(service: Service, simulator) -> None:
    for prefix in ("", "/kling"):
        response = service.http.post(
            f"{prefix}{LIP_SYNC}", json={"input": {"mode": "text2video", "txt": "hi"}}
        )
        assert response.status_code == 400 and response.json()["code"] == 1201
        errors = {(e["field"], e["code"]): e["message"] for e in response.json()["errors"]}
        assert set(errors) == {
            ("input.video_id", "missing"),
            ("input.text", "missing"),
            ("input.voice_id", "missing"),
            ("input.txt", "unknown_field"),
        }
        assert errors[("input.txt", "unknown_field")] == "unknown field; did you mean 'text'?"
    assert simulator.state.tasks() == []


def identify(service: Service, body: dict[str, Any], prefix: str = "") -> httpx.Response:
    return service.http.post(f"{prefix}{IDENTIFY}", json=body)


def test_identify_face_answers_kling_envelope_at_once_and_takes_no_slot(services_with, simulator) -> None:
    service = services_with(KLING_MAX_CONCURRENCY="1")
    simulator.state.set_default({"steps": [{"status": "processing", "delay": 0}]})  # open for good
    first = {"input": TEXT_INPUT, "external_task_id": "holds-the-slot"}
    assert service.http.post(LIP_SYNC, json=first).status_code == 200
    assert service.services.admission.in_flight() == 1  # the account's one slot is taken

    for prefix in ("", "/kling"):
        answer = identify(service, {"video_url": VIDEO_URL}, prefix)
        assert answer.status_code == 200, answer.text
        envelope = answer.json()
        assert envelope["code"] == 0 and envelope["message"] == "SUCCEED" and envelope["request_id"]
        assert envelope["request_id"] != answer.headers["X-Request-Id"]  # Kling's own, passed on
        (face,) = envelope["data"]["face_data"]
        assert face["face_id"] == "0" and (face["start_time"], face["end_time"]) == (0, 5000)
        assert httpx.get(face["face_image"]).content.startswith(b"\x89PNG\r\n\x1a\n")
        assert envelope["data"]["session_id"].isdigit()
    assert [task["external_task_id"] for task in simulator.state.tasks()] == ["holds-the-slot"]
    assert service.services.admission.in_flight() == 1
    for path in (LIP_SYNC, ADVANCED):  # nothing recorded beside the task
        listed = service.http.get(path).json()["data"]
        assert [task["task_info"]["external_task_id"] for task in listed] == (
            ["holds-the-slot"] if path == LIP_SYNC else []
        )


def test_identify_face_passes_kling_refusals_on_and_refuses_bad_bodies_itself(
    service: Service, simulator
) -> None:
    simulator.state.set_default(SUCCEED)
    ours = make_parent(service, "kling-forgot")["task_result"]["videos"][0]["id"]
    simulator.state.reset()  # Kling no longer knows the video the service recorded
    forgotten = identify(service, {"video_id": ours})
    assert forgotten.status_code == 400 and forgotten.json()["code"] == 1201
    assert forgotten.json()["message"] == f"video_id {ours!r} is not a video of this account"  # Kling's words
    unknown = identify(service, {"video_id": "999"})  # the service's own refusal: Kling is not asked
    assert unknown.status_code == 400 and unknown.json()["code"] == 1201
    assert [(e["field"], e["code"]) for e in unknown.json()["errors"]] == [("video_id", "not_yours")]
    both = identify(service, {"video_id": "1", "video_url": VIDEO_URL, "videoUrl": "x"})
    assert both.status_code == 400 and both.json()["code"] == 1201
    assert {(e["field"], e["code"]) for e in both.json()["errors"]} == {
        ("video_url", "exclusive"),
        ("videoUrl", "unknown_field"),
        ("video_id", "not_yours"),  # with the body's own problems, in the same answer
    }
    assert simulator.state.face_sessions() == []
    assert service.http.get(IDENTIFY).status_code == 405  # POST only, as at Kling


def archived_video(service: Service, external_id: str, env: dict[str, str]) -> dict[str, Any]:
    view = archived(service, external_id)
    assert view["archive_state"] == "archived", view["archive_error"]
    (video,) = view["archived_videos"]
    data = (Path(env["ARCHIVE_URL"]) / video["key"]).read_bytes()
    assert data[4:8] == b"ftyp" and video["sha256"] == hashlib.sha256(data).hexdigest()
    return view


def audio_in_inputs(service: Service, env: dict[str, str], external_id: str, field: str) -> None:
    """The Base64 audio is a file in the task's inputs/, typed by its bytes; Redis holds its reference,
    and metadata.json lists it with the field it came from."""
    request, _ = stored_request(service, external_id)
    holder, key = field.rsplit(".", 1)
    ref = request["input"][key] if holder == "input" else request["face_choose"][0][key]
    folder = task_folder(service.services.store.get(external_id))
    stem = field.replace("[", "_").replace("].", "_").replace(".", "_")
    assert ref["archived_input"].startswith(f"{folder}/inputs/{stem}-") and ref["archived_input"].endswith(
        ".wav"
    )
    assert ref["content_type"] == "audio/wav" and ref["size"] == len(WAV)
    assert ref["sha256"] == hashlib.sha256(WAV).hexdigest()
    assert (Path(env["ARCHIVE_URL"]) / ref["archived_input"]).read_bytes() == WAV
    metadata = json.loads((Path(env["ARCHIVE_URL"]) / folder / "metadata.json").read_text())
    assert [(i["field"], i["sha256"]) for i in metadata["inputs"]] == [(field, ref["sha256"])]


def test_a_lip_sync_with_base64_audio_round_trips_to_an_archived_video(running, simulator, env) -> None:
    service, workers = running
    workers.start()
    simulator.state.set_default(SUCCEED)
    body = {
        "input": {
            "video_url": VIDEO_URL,
            "mode": "audio2video",
            "audio_type": "file",
            "audio_file": b64(WAV),
        },
        "external_task_id": "ls-e2e",
    }
    response = service.http.post(f"/kling{LIP_SYNC}", json=body)
    assert response.status_code == 200, response.text
    view = archived_video(service, "ls-e2e", env)
    assert view["type"] == "lip-sync" and view["model_name"] == "lip-sync"

    assert sent_upstream(simulator, "ls-e2e")["input"] == body["input"]  # the audio byte for byte
    request, redis_bytes = stored_request(service, "ls-e2e")
    assert redis_bytes < 1024  # not the 53 KB of Base64
    assert request["input"]["video_url"] == VIDEO_URL
    audio_in_inputs(service, env, "ls-e2e", "input.audio_file")
    (task,) = simulator.state.tasks()
    assert task["type"] == "lip-sync"
    found_at_its_own_path_only(service, LIP_SYNC, "ls-e2e", task["task_id"])


def test_identify_face_then_advanced_lip_sync_on_a_kling_video(running, simulator, env) -> None:
    service, workers = running
    workers.start()
    simulator.state.set_default(SUCCEED)
    text = {"input": TEXT_INPUT, "external_task_id": "ls-text"}
    assert service.http.post(LIP_SYNC, json=text).status_code == 200
    archived_video(service, "ls-text", env)
    kling_video = service.http.get(f"{LIP_SYNC}/ls-text").json()["data"]["task_result"]["videos"][0]

    faces = identify(service, {"video_id": kling_video["id"]}, "/kling").json()["data"]
    (face,) = faces["face_data"]
    assert face["end_time"] == int(float(kling_video["duration"]) * 1000)  # that video's face, throughout
    body = {
        "session_id": faces["session_id"],
        "face_choose": [{**FACE, "face_id": face["face_id"], "sound_file": b64(WAV), "sound_volume": 1.5}],
        "external_task_id": "als-e2e",
    }
    response = service.http.post(ADVANCED, json=body)
    assert response.status_code == 200, response.text
    view = archived_video(service, "als-e2e", env)
    assert view["type"] == "advanced-lip-sync"
    sent = sent_upstream(simulator, "als-e2e")
    assert sent["session_id"] == faces["session_id"] and sent["face_choose"] == body["face_choose"]
    audio_in_inputs(service, env, "als-e2e", "face_choose[0].sound_file")
    task_id = next(t["task_id"] for t in simulator.state.tasks() if t["external_task_id"] == "als-e2e")
    for prefix in ("", "/kling"):
        for ref in ("als-e2e", task_id):
            data = service.http.get(f"{prefix}{ADVANCED}/{ref}").json()["data"]
            assert data["task_id"] == task_id and data["task_result"]["videos"][0]["archive_url"]
    assert service.http.get(f"{LIP_SYNC}/als-e2e").status_code == 404

    never = service.http.post(ADVANCED, json={**body, "session_id": "1", "external_task_id": "als-never"})
    assert never.status_code == 400  # a session identify-face never answered: refused before Kling
    assert [(e["field"], e["code"]) for e in never.json()["errors"]] == [("session_id", "not_yours")]
    simulator.state.reset()  # Kling forgets the session the service still knows
    stale = service.http.post(ADVANCED, json={**body, "external_task_id": "als-stale"})
    assert stale.status_code == 400 and "identify the faces first" in stale.json()["message"]  # Kling's


def test_cli_submits_a_lip_sync_with_extra_and_waits_for_its_video(running, simulator) -> None:
    service, workers = running
    workers.start()
    simulator.state.set_default(SUCCEED)
    extra = json.dumps({"input": {**TEXT_INPUT, "voice_speed": 1.2}})
    args = ("submit", "--type", "lip-sync", "--extra", extra, "--external-task-id", "cli-ls")
    result = run(service.app, *args, "--wait", "--timeout", "60")
    assert result.exit_code == 0, result.output
    assert "archived" in result.stdout
    assert sent_upstream(simulator, "cli-ls")["input"]["voice_speed"] == 1.2
    refused = run(service.app, "submit", "--type", "lip-sync", "--extra", '{"input": {"mode": "text2video"}}')
    assert (
        refused.exit_code == 2
        and 'input.text: is required when mode is "text2video" [missing]' in refused.stderr
    )
