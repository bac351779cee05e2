"""Tests of the create-body validation: one group per rule of Kling's image2video API."""

import base64
import copy
from typing import Any

import pytest

from webhook_service.domain.validation import (
    CAMERA_TYPES,
    KNOWN_FIELDS,
    MODEL_NAMES,
    FieldProblem,
    RequestInvalid,
    validate_image2video,
)

URL = "https://example.com/first-frame.jpg"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(64)).decode()
TWO_POINTS = [{"x": 100, "y": 200}, {"x": 150, "y": 250}]
ZOOM = {"type": "simple", "config": {"zoom": 5}}

SEED_SCENES = [
    {
        "model_name": "kling-v1",
        "image": "https://example.com/first-frame.jpg",
        "prompt": "A mouse runs toward the camera, smiling and blinking",
        "mode": "std",
        "duration": "5",
        "aspect_ratio": "16:9",
    },
    {
        "model_name": "kling-v1",
        "image": "https://example.com/child.jpg",
        "image_tail": "https://example.com/adult.jpg",
        "prompt": "A little girl grows up",
        "mode": "pro",
        "duration": "10",
        "aspect_ratio": "16:9",
    },
    {
        "model_name": "kling-v2-master",
        "image": "https://example.com/landscape.jpg",
        "prompt": "Camera slowly zooms in on the mountain peak",
        "camera_control": {"type": "simple", "config": {"zoom": 5}},
        "duration": "10",
        "aspect_ratio": "16:9",
    },
]


def passes(body: dict[str, Any], **kwargs: Any) -> None:
    """The body validates and comes back equal to what was sent, untouched."""
    sent = copy.deepcopy(body)
    assert validate_image2video(body, **kwargs) == sent
    assert body == sent


def problems_of(body: object, **kwargs: Any) -> list[FieldProblem]:
    with pytest.raises(RequestInvalid) as raised:
        validate_image2video(body, **kwargs)
    return raised.value.problems


def fails(body: object, **kwargs: Any) -> set[tuple[str, str]]:
    """The (field path, code) pairs of every problem reported."""
    return {(problem.field, problem.code) for problem in problems_of(body, **kwargs)}


def message(body: object, field: str, **kwargs: Any) -> str:
    return next(problem.message for problem in problems_of(body, **kwargs) if problem.field == field)


def with_image(**fields: Any) -> dict[str, Any]:
    return {"image": URL, **fields}


# --- the body as a whole ---------------------------------------------------------------------


@pytest.mark.parametrize("scene", SEED_SCENES, ids=["first-frame", "first-and-last-frame", "camera-zoom"])
def test_seed_scenes_pass_unchanged(scene: dict[str, Any]) -> None:
    passes(scene)


def test_returned_body_is_the_input_without_defaults() -> None:
    body = with_image(prompt="a cat")
    result = validate_image2video(body)
    assert result == {"image": URL, "prompt": "a cat"}
    assert result is not body


@pytest.mark.parametrize("body", [[], "image", None, 5, [{"image": URL}]])
def test_body_must_be_an_object(body: object) -> None:
    assert fails(body) == {("", "type")}


def test_image_is_required() -> None:
    assert fails({"prompt": "a cat"}) == {("image", "missing")}


def test_known_fields_are_klings() -> None:
    assert set(KNOWN_FIELDS) == {
        *("model_name", "image", "image_tail", "prompt", "negative_prompt", "voice_list", "sound"),
        *("cfg_scale", "mode", "static_mask", "dynamic_masks", "camera_control", "aspect_ratio"),
        *("duration", "watermark_info", "callback_url", "external_task_id"),
        *("multi_shot", "shot_type", "multi_prompt"),  # kling-v3's
    }


def test_every_problem_is_reported_with_its_path() -> None:
    body = {
        "promt": "a cat",
        "mode": "fast",
        "duration": 5,
        "cfg_scale": 2,
        "image_tail": "ftp://example.com/b.jpg",
        "camera_control": {"type": "simple", "config": {"zoom": 11}},
        "dynamic_masks": [{"mask": PNG, "trajectories": [{"x": 1.5, "y": 2}, {"x": 1, "y": True}]}],
        "watermark_info": {"enabled": "yes"},
    }
    assert fails(body) == {
        ("image", "missing"),
        ("promt", "unknown_field"),
        ("mode", "enum"),
        ("duration", "type"),
        ("cfg_scale", "range"),
        ("image_tail", "format"),
        ("camera_control.config.zoom", "range"),
        ("dynamic_masks[0].trajectories[0].x", "type"),
        ("dynamic_masks[0].trajectories[1].y", "type"),
        ("watermark_info.enabled", "type"),
        ("", "exclusive"),
    }


def test_problem_as_dict_and_exception_text() -> None:
    [problem] = problems_of(with_image(mode="fast"))
    assert problem.as_dict() == {"field": "mode", "code": "enum", "message": "must be one of: std, pro"}
    assert "mode: must be one of: std, pro" in str(RequestInvalid([problem]))


# --- types --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"prompt": 5}, "prompt"),
        ({"negative_prompt": ["no"]}, "negative_prompt"),
        ({"model_name": 1}, "model_name"),
        ({"image": 123}, "image"),
        ({"cfg_scale": True}, "cfg_scale"),
        ({"cfg_scale": "0.5"}, "cfg_scale"),
        ({"watermark_info": True}, "watermark_info"),
        ({"watermark_info": {"enabled": "yes"}}, "watermark_info.enabled"),
        ({"watermark_info": {"enabled": 1}}, "watermark_info.enabled"),
        ({"dynamic_masks": {"mask": PNG}}, "dynamic_masks"),
        ({"dynamic_masks": ["mask"]}, "dynamic_masks[0]"),
        ({"camera_control": "simple"}, "camera_control"),
        ({"callback_url": 1}, "callback_url"),
        ({"external_task_id": 42}, "external_task_id"),
        ({"mode": None}, "mode"),
    ],
)
def test_wrong_types_are_rejected(fields: dict[str, Any], path: str) -> None:
    assert fails(with_image(**fields)) == {(path, "type")}


def test_null_is_not_absent() -> None:
    assert message(with_image(prompt=None), "prompt") == "must be a string, not null (omit the field instead)"


def test_watermark_info_and_integer_cfg_scale_pass() -> None:
    passes(with_image(watermark_info={"enabled": False}, cfg_scale=1))


# --- enums --------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_every_model_name_passes(model: str) -> None:
    passes(with_image(model_name=model))


@pytest.mark.parametrize(
    ("field", "good", "bad", "allowed"),
    [
        ("model_name", "kling-v2-6", "kling-v4", ", ".join(MODEL_NAMES)),
        ("mode", "pro", "fast", "std, pro"),
        ("sound", "off", "yes", "on, off"),
        ("aspect_ratio", "1:1", "4:3", "16:9, 9:16, 1:1"),
    ],
)
def test_enums(field: str, good: str, bad: str, allowed: str) -> None:
    model = {"model_name": "kling-v2-6"} if field != "model_name" else {}
    passes(with_image(**model, **{field: good}))
    body = with_image(**model, **{field: bad})
    assert fails(body) == {(field, "enum")}
    assert message(body, field) == f"must be one of: {allowed}"


@pytest.mark.parametrize(("field", "value"), [("mode", "std"), ("sound", "on"), ("aspect_ratio", "9:16")])
def test_other_enum_values_pass(field: str, value: str) -> None:
    passes(with_image(model_name="kling-v2-6", **{field: value}))


@pytest.mark.parametrize(("value", "aspect"), [("5", "16:9"), ("10", "9:16")])
def test_durations_pass(value: str, aspect: str) -> None:
    passes(with_image(duration=value, aspect_ratio=aspect))


@pytest.mark.parametrize("value", [5, 10, 5.0])
def test_numeric_duration_is_rejected_with_a_clear_message(value: float) -> None:
    body = with_image(duration=value)
    assert fails(body) == {("duration", "type")}
    assert message(body, "duration") == 'must be a string, "5" or "10" (kling-v3: "3" to "15"): not a number'


@pytest.mark.parametrize("camera_type", CAMERA_TYPES)
def test_every_camera_type_passes(camera_type: str) -> None:
    camera = ZOOM if camera_type == "simple" else {"type": camera_type}
    passes(with_image(camera_control=camera))


def test_unknown_camera_type_is_rejected() -> None:
    assert fails(with_image(camera_control={"type": "orbit"})) == {("camera_control.type", "enum")}


# --- prompts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["prompt", "negative_prompt"])
def test_prompt_length(field: str) -> None:
    passes(with_image(**{field: "a" * 2500}))
    passes(with_image(**{field: "猫" * 2500}))  # characters, not bytes
    body = with_image(**{field: "a" * 2501})
    assert fails(body) == {(field, "too_long")}
    assert message(body, field) == "must be at most 2500 characters"


# --- images: URL or raw Base64 ------------------------------------------------------------------

IMAGE_PLACES = {
    "image": lambda value: {"image": value},
    "image_tail": lambda value: with_image(image_tail=value),
    "static_mask": lambda value: with_image(static_mask=value),
    "dynamic_masks[0].mask": lambda value: with_image(
        dynamic_masks=[{"mask": value, "trajectories": TWO_POINTS}]
    ),
}


@pytest.mark.parametrize("path", IMAGE_PLACES)
@pytest.mark.parametrize("value", [URL, "http://example.com/a.png?x=1", "HTTPS://EXAMPLE.COM/A.PNG", PNG])
def test_image_url_or_base64_passes(path: str, value: str) -> None:
    passes(IMAGE_PLACES[path](value))


@pytest.mark.parametrize("path", IMAGE_PLACES)
@pytest.mark.parametrize(
    "value",
    [
        "ftp://example.com/a.jpg",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "https://",
        "https:/a.jpg",
        "http://[::1",
        "not base64!",
        "iVBORw0KGgo",  # wrong padding
        PNG[:20] + "\n" + PNG[20:],
    ],
)
def test_bad_image_is_rejected(path: str, value: str) -> None:
    assert fails(IMAGE_PLACES[path](value)) == {(path, "format")}


@pytest.mark.parametrize("path", IMAGE_PLACES)
def test_data_prefix_is_rejected_with_advice_to_strip_it(path: str) -> None:
    body = IMAGE_PLACES[path]("data:image/png;base64," + PNG)
    assert fails(body) == {(path, "format")}
    assert "strip" in message(body, path)


@pytest.mark.parametrize("path", IMAGE_PLACES)
def test_empty_image_is_rejected(path: str) -> None:
    assert fails(IMAGE_PLACES[path]("")) == {(path, "too_short")}


def test_image_size_limit_applies_to_decoded_bytes() -> None:
    limit = 10 * 1024 * 1024
    passes({"image": base64.b64encode(bytes(limit)).decode()})
    assert fails({"image": base64.b64encode(bytes(limit + 1)).decode()}) == {("image", "too_large")}


# --- callback_url and external_task_id ----------------------------------------------------------


@pytest.mark.parametrize("url", ["https://hooks.example.com/kling", "http://93.184.216.34:8080/cb?token=x"])
def test_callback_url_passes(url: str) -> None:
    passes(with_image(callback_url=url))


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:9/cb", "loopback"),
        ("http://localhost/cb", "loopback"),
        ("http://hooks.localhost./cb", "loopback"),
        ("http://[::1]:8080/", "loopback"),
        ("http://2130706433/", "loopback"),  # 127.0.0.1 as one number, as resolvers read it
        ("http://10.0.0.5:8080/cb?token=x", "private"),
        ("http://[::ffff:192.168.1.1]/", "private"),
        ("http://169.254.169.254/latest/meta-data", "private"),  # a cloud's metadata service
    ],
)
def test_callback_url_at_an_internal_address_is_refused_before_anything_is_sent(url: str, why: str) -> None:
    """The service would refuse to call it; better said now than after the video is paid for."""
    problems = problems_of(with_image(callback_url=url))
    assert [(p.field, p.code) for p in problems] == [("callback_url", "blocked_address")]
    assert why in problems[0].message and "NOTIFY_ALLOWED_HOSTS" in problems[0].message


def test_an_internal_callback_host_the_operator_allows_passes() -> None:
    passes(with_image(callback_url="http://10.0.0.5:8080/cb"), allowed_hosts=frozenset({"10.0.0.5"}))
    passes(with_image(callback_url="http://receiver.internal/cb"), allowed_hosts=frozenset())  # a name
    assert fails(with_image(callback_url="http://10.0.0.6/cb"), allowed_hosts=frozenset({"10.0.0.5"})) == {
        ("callback_url", "blocked_address")
    }


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/cb",
        "example.com/cb",
        "https://",
        "javascript:alert(1)",
        "file:///tmp/x",
        "",
        "https://example.com:99999/cb",  # a port out of range: no URL at all
        "https://example.com:port/cb",
    ],
)
def test_bad_callback_url_is_rejected(url: str) -> None:
    assert fails(with_image(callback_url=url)) == {("callback_url", "format")}


@pytest.mark.parametrize("task_id", ["order-123", "A_b.c:d/e#1", "x" * 64, "!}"])
def test_external_task_id_passes(task_id: str) -> None:
    passes(with_image(external_task_id=task_id))


@pytest.mark.parametrize(
    ("task_id", "code"),
    [
        ("", "too_short"),
        ("x" * 65, "too_long"),
        ("has space", "format"),
        ("tab\there", "format"),
        ("ünï", "format"),
        ("team-a~job-1", "format"),  # '~' is reserved: it keeps tenants' ids apart upstream
    ],
)
def test_bad_external_task_id_is_rejected(task_id: str, code: str) -> None:
    assert fails(with_image(external_task_id=task_id)) == {("external_task_id", code)}


# --- the three exclusive groups -----------------------------------------------------------------

GROUPS = {
    "image_tail": {"image_tail": URL},
    "static_mask": {"static_mask": PNG},
    "dynamic_masks": {"dynamic_masks": [{"mask": PNG, "trajectories": TWO_POINTS}]},
    "camera_control": {"camera_control": ZOOM},
}


@pytest.mark.parametrize(
    "combination",
    [
        ("image_tail", "camera_control"),
        ("image_tail", "static_mask"),
        ("image_tail", "dynamic_masks"),
        ("static_mask", "camera_control"),
        ("dynamic_masks", "camera_control"),
        ("image_tail", "dynamic_masks", "camera_control"),
    ],
)
def test_groups_exclude_each_other(combination: tuple[str, ...]) -> None:
    body = with_image(model_name="kling-v2-master")
    for group in combination:
        body.update(GROUPS[group])
    assert fails(body) == {("", "exclusive")}
    assert message(body, "").endswith("; got " + ", ".join(combination))


def test_exclusive_message_groups_the_motion_brush_fields() -> None:
    body = with_image(**GROUPS["image_tail"], **GROUPS["static_mask"], **GROUPS["dynamic_masks"])
    assert message(body, "").endswith("; got image_tail, static_mask/dynamic_masks")


@pytest.mark.parametrize("group", GROUPS)
def test_each_group_alone_passes(group: str) -> None:
    passes(with_image(**GROUPS[group]))


def test_static_and_dynamic_masks_are_one_group() -> None:
    passes(with_image(**GROUPS["static_mask"], **GROUPS["dynamic_masks"]))


# --- model-dependent fields ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"model_name": "kling-v2-5", "sound": "off"}, "sound"),
        ({"sound": "off"}, "sound"),  # the default model, kling-v1
        ({"model_name": "kling-v2-master", "cfg_scale": 0.5}, "cfg_scale"),
        ({"model_name": "kling-v2-6", "cfg_scale": 0.5, "sound": "on"}, "cfg_scale"),
    ],
)
def test_field_not_supported_by_model(fields: dict[str, Any], field: str) -> None:
    assert fails(with_image(**fields)) == {(field, "not_supported_by_model")}


def test_message_names_the_default_model() -> None:
    text = message(with_image(sound="on"), "sound")
    assert (
        text == "only supported by kling-v2-6, kling-v3, not kling-v1 (the default when model_name is absent)"
    )


@pytest.mark.parametrize("model", [None, "kling-v1", "kling-v1-5", "kling-v1-6"])
def test_cfg_scale_on_v1_models(model: str | None) -> None:
    passes(with_image(cfg_scale=0.5, **({"model_name": model} if model else {})))


def test_model_rules_are_skipped_when_model_name_is_invalid() -> None:
    assert fails(with_image(model_name="kling-v9", sound="on", cfg_scale=0.5)) == {("model_name", "enum")}


@pytest.mark.parametrize("value", [0, 1, 0.5, 0.0, 1.0])
def test_cfg_scale_bounds_pass(value: float) -> None:
    passes(with_image(cfg_scale=value))


@pytest.mark.parametrize("value", [-0.1, 1.1, float("nan"), float("inf")])
def test_cfg_scale_out_of_range(value: float) -> None:
    body = with_image(cfg_scale=value)
    assert fails(body) == {("cfg_scale", "range")}
    assert message(body, "cfg_scale") == "must be between 0 and 1"


# --- voice_list ---------------------------------------------------------------------------------


def test_voice_list_passes_with_sound_on_v2_6() -> None:
    passes(with_image(model_name="kling-v2-6", sound="on", voice_list=[{"voice_id": "a"}, {"voice_id": "b"}]))


@pytest.mark.parametrize("sound", [{}, {"sound": "off"}])
def test_voice_list_requires_sound_on(sound: dict[str, str]) -> None:
    body = with_image(model_name="kling-v2-6", voice_list=[{"voice_id": "a"}], **sound)
    assert fails(body) == {("voice_list", "requires")}


def test_voice_list_on_another_model() -> None:
    body = with_image(model_name="kling-v2-5", voice_list=[{"voice_id": "a"}])
    assert fails(body) == {("voice_list", "not_supported_by_model"), ("voice_list", "requires")}


@pytest.mark.parametrize(
    ("voices", "path", "code"),
    [
        ([{"voice_id": "a"}, {"voice_id": "b"}, {"voice_id": "c"}], "voice_list", "too_many"),
        ([{}], "voice_list[0].voice_id", "missing"),
        ([{"voice_id": ""}], "voice_list[0].voice_id", "too_short"),
        ([{"voice_id": 7}], "voice_list[0].voice_id", "type"),
        ([{"voice_id": "a", "speed": 2}], "voice_list[0].speed", "unknown_field"),
        ("a", "voice_list", "type"),
    ],
)
def test_bad_voice_list(voices: object, path: str, code: str) -> None:
    assert fails(with_image(model_name="kling-v2-6", sound="on", voice_list=voices)) == {(path, code)}


# --- dynamic_masks ------------------------------------------------------------------------------


def brush(points: int, masks: int = 1) -> dict[str, Any]:
    trajectory = [{"x": i, "y": i + 1} for i in range(points)]
    return with_image(dynamic_masks=[{"mask": PNG, "trajectories": trajectory} for _ in range(masks)])


@pytest.mark.parametrize(("points", "masks"), [(2, 1), (77, 1), (2, 6)])
def test_dynamic_mask_bounds_pass(points: int, masks: int) -> None:
    passes(brush(points, masks))


@pytest.mark.parametrize(
    ("points", "masks", "path", "code"),
    [
        (1, 1, "dynamic_masks[0].trajectories", "too_few"),
        (0, 1, "dynamic_masks[0].trajectories", "too_few"),
        (78, 1, "dynamic_masks[0].trajectories", "too_many"),
        (2, 7, "dynamic_masks", "too_many"),
    ],
)
def test_dynamic_mask_bounds_fail(points: int, masks: int, path: str, code: str) -> None:
    assert fails(brush(points, masks)) == {(path, code)}


@pytest.mark.parametrize(
    ("mask", "path", "code"),
    [
        ({"mask": PNG, "trajectories": [{"x": 1, "y": 2}, {"x": 1.5, "y": 2}]}, "[1].x", "type"),
        ({"mask": PNG, "trajectories": [{"x": 1, "y": 2}, {"x": 1, "y": True}]}, "[1].y", "type"),
        ({"mask": PNG, "trajectories": [{"x": 1, "y": 2}, {"x": 1, "y": "2"}]}, "[1].y", "type"),
        ({"mask": PNG, "trajectories": [{"x": 1, "y": 2}, {"x": 1}]}, "[1].y", "missing"),
        (
            {"mask": PNG, "trajectories": [{"x": 1, "y": 2}, {"x": 1, "y": 2, "z": 3}]},
            "[1].z",
            "unknown_field",
        ),
    ],
)
def test_bad_trajectory_point(mask: dict[str, Any], path: str, code: str) -> None:
    assert fails(with_image(dynamic_masks=[mask])) == {(f"dynamic_masks[0].trajectories{path}", code)}


@pytest.mark.parametrize(
    ("mask", "path", "code"),
    [
        ({"trajectories": TWO_POINTS}, "mask", "missing"),
        ({"mask": PNG}, "trajectories", "missing"),
        ({"mask": PNG, "trajectories": TWO_POINTS, "speed": 1}, "speed", "unknown_field"),
    ],
)
def test_bad_dynamic_mask(mask: dict[str, Any], path: str, code: str) -> None:
    assert fails(with_image(dynamic_masks=[mask])) == {(f"dynamic_masks[0].{path}", code)}


# --- camera_control -----------------------------------------------------------------------------


def camera(**config: Any) -> dict[str, Any]:
    return with_image(camera_control={"type": "simple", "config": config})


@pytest.mark.parametrize("axis", ["horizontal", "vertical", "pan", "tilt", "roll", "zoom"])
@pytest.mark.parametrize("value", [10, -10, 0.5, 10.0])
def test_camera_axis_bounds_pass(axis: str, value: float) -> None:
    passes(camera(**{axis: value}))


def test_zero_axes_beside_the_moving_one_pass() -> None:
    passes(camera(zoom=3, pan=0, tilt=0.0))


@pytest.mark.parametrize("value", [10.5, -10.5, 11, float("nan")])
def test_camera_axis_out_of_range(value: float) -> None:
    body = camera(zoom=value)
    assert fails(body) == {("camera_control.config.zoom", "range")}
    assert message(body, "camera_control.config.zoom") == "must be between -10 and 10"


@pytest.mark.parametrize("value", ["5", True, None])
def test_camera_axis_must_be_a_number(value: object) -> None:
    assert fails(camera(zoom=value)) == {("camera_control.config.zoom", "type")}


@pytest.mark.parametrize(
    ("config", "code"),
    [({"zoom": 5, "pan": -2}, "too_many"), ({"zoom": 0, "pan": 0}, "too_few"), ({}, "too_few")],
)
def test_exactly_one_camera_axis_moves(config: dict[str, float], code: str) -> None:
    assert fails(camera(**config)) == {("camera_control.config", code)}


def test_simple_camera_requires_config() -> None:
    assert fails(with_image(camera_control={"type": "simple"})) == {("camera_control.config", "missing")}


def test_config_only_with_simple() -> None:
    body = with_image(camera_control={"type": "down_back", "config": {"zoom": 5}})
    assert fails(body) == {("camera_control.config", "requires")}


@pytest.mark.parametrize(
    ("control", "path", "code"),
    [
        ({"config": {"zoom": 5}}, "camera_control.type", "missing"),
        ({"type": "simple", "config": {"zomm": 5}}, "camera_control.config.zomm", "unknown_field"),
        ({"type": "simple", "config": {"zoom": 5}, "speed": 1}, "camera_control.speed", "unknown_field"),
        ({"type": "simple", "config": None}, "camera_control.config", "type"),
    ],
)
def test_bad_camera_control(control: dict[str, Any], path: str, code: str) -> None:
    assert fails(with_image(camera_control=control)) == {(path, code)}


def test_nested_misspelling_gets_a_hint() -> None:
    body = camera(zomm=5)
    assert message(body, "camera_control.config.zomm") == "unknown field; did you mean 'zoom'?"


def test_nested_unknown_field_lists_the_allowed_ones() -> None:
    body = with_image(watermark_info={"enabled": True, "position": "top"})
    assert fails(body) == {("watermark_info.position", "unknown_field")}
    assert message(body, "watermark_info.position") == "unknown field; allowed: enabled"


# --- unknown top-level fields -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "hint"),
    [
        ("promt", "prompt"),
        ("negative_promt", "negative_prompt"),
        ("callbackUrl", "callback_url"),
        ("Image", "image"),
    ],
)
def test_misspelt_field_is_rejected_with_a_hint(field: str, hint: str) -> None:
    body = with_image(**{field: "x"})
    assert fails(body) == {(field, "unknown_field")}
    assert message(body, field).startswith(f"unknown field; did you mean '{hint}'")


def test_unrelated_unknown_field_points_to_the_setting() -> None:
    body = with_image(element_list=[{"element_id": 1}])
    assert fails(body) == {("element_list", "unknown_field")}
    assert "KLING_EXTRA_FIELDS" in message(body, "element_list")


def test_named_extra_field_passes() -> None:
    passes(with_image(element_list=[]), extra_fields=frozenset({"element_list"}))
    assert fails(with_image(other=1), extra_fields=frozenset({"element_list"})) == {
        ("other", "unknown_field")
    }


def test_a_named_misspelling_is_the_operators_choice() -> None:
    passes(with_image(promt="x"), extra_fields=frozenset({"promt"}))


@pytest.mark.parametrize("field", ["seed", "element_list", "image_list", "enable_audio"])
def test_star_lets_new_fields_through(field: str) -> None:
    passes(with_image(**{field: {"any": "value"}}), extra_fields=frozenset({"*"}))


@pytest.mark.parametrize("field", ["promt", "Prompt", "modelName", "model", "cfgscale", "durration"])
def test_star_still_rejects_misspellings(field: str) -> None:
    assert fails(with_image(**{field: "x"}), extra_fields=frozenset({"*"})) == {(field, "unknown_field")}
