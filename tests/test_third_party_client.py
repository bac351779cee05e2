"""A third-party Kling client works against the service by changing only its base URL.

The client is kling-api 1.0.0 (npm; pinned with its dependencies in third_party_client/package-lock.json),
the most complete client of Kling's own API published: JWTs from an access key and a secret key, and
create, query and wait-for-result calls for every task type listed in CALLS. No Python client of Kling's
API installs here (the one on PyPI, klingai-api, needs Python 3.14 and covers two types). For every type
the service serves that the library has a call for, third_party_client/drive.mjs creates a task with
the library's own call (no callback_url and no external_task_id unless a case sends one, as the library
does by default) and polls it with the library's own wait, through the service to the Kling simulator;
the test then checks what a user would: the service accepted the library's JWT, made an
external_task_id, gave Kling its own callback URL, and archived every output file.

The library refuses a base URL that is not https://, so the service is served over TLS here too (a
self-signed certificate that node is told to trust through NODE_EXTRA_CA_CERTS, as a deployment's own CA
would be); Kling's callbacks still reach it over plain HTTP on its public URL.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kling_simulator.images import tiny_png
from tests import test_task_types
from tests.conftest import Service, Workers, make_service
from tests.support import LiveServer, wait_for
from tests.test_callbacks import post_callback
from tests.test_task_types import archived
from webhook_service.domain.task_types import TASK_TYPES, Output

running = test_task_types.running  # the service and real workers, archiving at once

CLIENT_DIR = Path(__file__).parent / "third_party_client"
AK, SK = "pipeline-access-key", "pipeline-secret-key-0123456789abcdef"
PICTURE = tiny_png(8, 12, (40, 120, 200))
PICTURE_FILE = "picture.png"  # written beside the test's archive: the library sends a local file as Base64
SOURCE_VIDEO = "<a video the library made first>"


@dataclass(frozen=True)
class Call:
    """The library's calls for one task type, and the parameters a pipeline would give it.

    A parameter value PICTURE_FILE is replaced by the path of a local PNG, which the library reads and
    sends as raw Base64 (the service archives it in inputs/); SOURCE_VIDEO by the id of a video."""

    create: str
    query: str
    wait: str
    params: dict[str, Any] = field(default_factory=dict)


# Every Kling task type kling-api 1.0.0 has a call for, by the service's type name (TASK_TYPES' keys):
# each one the service serves is driven below; the others are ready for when it does.
CALLS = {
    "image2video": Call(
        "imageToVideo",
        "queryImageToVideoTask",
        "waitForVideoResult",
        {"image": PICTURE_FILE, "prompt": "the water ripples", "duration": "5"},
    ),
    "text2video": Call(
        "textToVideo",
        "queryTextToVideoTask",
        "waitForVideoResult",
        {"prompt": "a lighthouse at dusk", "mode": "std", "external_task_id": "pipeline-t2v-1"},
    ),
    "generations": Call(
        "generateImage",
        "queryImageGenTask",
        "waitForImageResult",
        {"prompt": "a red bicycle against a white wall", "n": 2, "aspect_ratio": "1:1"},
    ),
    "multi-image2image": Call(
        "multiImageToImage",
        "queryMultiImageToImageTask",
        "waitForImageResult",
        {
            "subject_image_list": [
                {"subject_image": PICTURE_FILE},
                {"subject_image": "https://example.com/subject.jpg"},
            ],
            "prompt": "the two subjects on a beach",
        },
    ),
    "multi-image2video": Call(
        "multiImageToVideo",
        "queryMultiImageToVideoTask",
        "waitForVideoResult",
        {
            "image_list": [{"image": PICTURE_FILE}, {"image": "https://example.com/b.jpg"}],
            "prompt": "they meet",
        },
    ),
    # The library sends no external_task_id with this call, even when given one.
    "video-extend": Call(
        "extendVideo",
        "queryExtendVideoTask",
        "waitForVideoResult",
        {"video_id": SOURCE_VIDEO, "prompt": "the camera keeps moving"},
    ),
    "expand": Call(
        "expandImage",
        "queryImageExpandTask",
        "waitForImageResult",
        {
            "image": PICTURE_FILE,
            "up_expansion_ratio": 0.1,
            "down_expansion_ratio": 0.1,
            "left_expansion_ratio": 0.5,
            "right_expansion_ratio": 0.5,
        },
    ),
}
# Kling task types kling-api 1.0.0 has no call for (its omni and avatar calls are for types of Kling's
# that the service does not know of).
NOT_IN_LIBRARY = {"kolors-virtual-try-on", "lip-sync", "identify-face", "advanced-lip-sync", "effects"}
DRIVEN = sorted(set(CALLS) & set(TASK_TYPES))


def bearer() -> dict[str, str]:
    """The test's own reads of /v1/tasks: a Kling-style JWT, as the library makes them."""
    now = int(time.time())
    token = jwt.encode({"iss": AK, "exp": now + 1800, "nbf": now - 5}, SK, algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def node() -> str:
    """node, with the library installed from the lock file (scripts/test installs it before the run, so
    that the tests contact loopback only; a run without it installs it here)."""
    found, npm = shutil.which("node"), shutil.which("npm")
    installed = (CLIENT_DIR / "node_modules" / "kling-api").is_dir()
    if found is None or not (installed or npm):
        pytest.skip("node and npm are not installed: the third-party client is a Node package")
    if not installed:
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=CLIENT_DIR, check=True, timeout=600)
    return found


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """A self-signed certificate for 127.0.0.1 and the server context that presents it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    """The service accepts JWTs signed with this access key and secret key, and nothing unsigned."""
    return {**env, "SERVICE_ACCESS_KEY": AK, "SERVICE_SECRET_KEY": SK}


@pytest.fixture
def https_url(running: tuple[Service, Any], tls: tuple[ssl.SSLContext, Path]) -> Iterator[str]:
    """The running service (with its workers) also served over HTTPS: the base URL the library gets."""
    service, workers = running
    workers.start()
    service.http.headers.update(bearer())
    server = LiveServer(ssl_context=tls[0]).start(service.app)
    yield server.url
    server.stop()


@dataclass(frozen=True)
class Library:
    """kling-api run by node (drive.mjs), configured with a base URL and credentials only."""

    node: str
    base_url: str
    cert: Path

    def run(
        self, call: Call, params: dict[str, Any], *, prefix: str = "", secret: str = SK
    ) -> dict[str, Any]:
        """The library's create and wait calls: its answers as it returned them, or the error it raised."""
        job = {"baseUrl": self.base_url + prefix, "accessKey": AK, "secretKey": secret, "params": params}
        job |= {"create": call.create, "query": call.query, "wait": call.wait}
        # The library reads KLING_ACCESS_KEY and KLING_SECRET_KEY only when none are passed: none leak in.
        clean = {k: v for k, v in os.environ.items() if not k.startswith("KLING_")}
        run = subprocess.run(
            [self.node, str(CLIENT_DIR / "drive.mjs"), json.dumps(job)],
            cwd=CLIENT_DIR,
            # axios would send it through a proxy named in the environment: loopback goes direct.
            env={
                **clean,
                "NODE_EXTRA_CA_CERTS": str(self.cert),
                "NO_PROXY": "127.0.0.1",
                "no_proxy": "127.0.0.1",
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
        answer: dict[str, Any] = json.loads(run.stdout or "{}")
        assert ("error" in answer) is (run.returncode != 0) and answer, run.stderr
        return answer

    def drive(self, call: Call, params: dict[str, Any], **options: Any) -> dict[str, Any]:
        answer = self.run(call, params, **options)
        assert "error" not in answer, answer
        return answer


@pytest.fixture
def library(node: str, https_url: str, tls: tuple[ssl.SSLContext, Path]) -> Library:
    return Library(node, https_url, tls[1])


def prepared(params: dict[str, Any], folder: Path, library: Library) -> dict[str, Any]:
    """The case's parameters with its placeholders filled: a local PNG's path, and the id of a video the
    library made first (through the service) for a type that continues one."""
    text = json.dumps(params)
    if json.dumps(PICTURE_FILE) in text:
        picture = folder / PICTURE_FILE
        picture.write_bytes(PICTURE)
        text = text.replace(json.dumps(PICTURE_FILE), json.dumps(str(picture)))
    if json.dumps(SOURCE_VIDEO) in text:
        source = library.drive(CALLS["text2video"], {"prompt": "a video to continue"})
        video_id = source["done"]["data"]["task_result"]["videos"][0]["id"]
        text = text.replace(json.dumps(SOURCE_VIDEO), json.dumps(video_id))
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def archived_files(service: Service, task_id: str, env: dict[str, str]) -> tuple[dict[str, Any], list[bytes]]:
    """The task's view once archived, and each archived file's bytes, checked against its sha256."""
    view = archived(service, task_id)
    assert view["archive_state"] == "archived", view["archive_error"]
    entries = view["archived_videos"] or view["archived_images"]
    contents = [(Path(env["ARCHIVE_URL"]) / entry["key"]).read_bytes() for entry in entries]
    assert [(hashlib.sha256(c).hexdigest(), len(c)) for c in contents] == [
        (entry["sha256"], entry["size"]) for entry in entries
    ]
    return view, contents


def test_every_type_the_service_serves_is_driven_or_missing_from_the_library() -> None:
    """A type added to the service is driven here as soon as the library has a call for it. Kling's
    unified API (the model in the path) is another protocol, which the library does not speak."""
    native = {name for name, kind in TASK_TYPES.items() if not getattr(kind, "unified", False)}
    assert native <= set(CALLS) | NOT_IN_LIBRARY, native - set(CALLS) - NOT_IN_LIBRARY
    assert {"image2video", "text2video", "generations", "multi-image2image"} <= set(DRIVEN)


@pytest.mark.parametrize("type_name", DRIVEN)
def test_the_library_round_trips_each_type_to_an_archived_output(
    type_name: str, library: Library, running, simulator, env, tmp_path: Path
) -> None:
    service, _ = running
    kind, call = TASK_TYPES[type_name], CALLS[type_name]
    simulator.state.set_default(
        {"steps": [{"status": "processing", "delay": 0}, {"status": "succeed", "delay": 0.3}]}
    )
    params = prepared(call.params, tmp_path, library)

    answer = library.drive(call, params)

    created, done = answer["created"]["data"], answer["done"]["data"]
    assert answer["created"]["code"] == 0 and created["task_status"] in ("submitted", "processing")
    task_id, external_id = created["task_id"], created["task_info"]["external_task_id"]
    assert external_id == params.get("external_task_id", external_id) and external_id.startswith(
        "pipeline-" if "external_task_id" in params else "kws-"  # the service made one
    )
    assert done["task_id"] == task_id and done["task_status"] == "succeed"
    outputs = done["task_result"]["videos" if kind.output is Output.VIDEO else "images"]
    assert outputs and all(output["url"] for output in outputs)
    if answer["byExternalId"] is not None:
        assert answer["byExternalId"]["data"]["task_id"] == task_id

    # Kling got the library's body, with the service's own callback URL and external_task_id added.
    (upstream,) = [task for task in simulator.state.tasks() if task["type"] == type_name]
    assert upstream["external_task_id"] == external_id
    assert upstream["request"]["callback_url"].startswith(f"{service.url}/callbacks/kling?")
    sent_picture = PICTURE_FILE in json.dumps(call.params)
    assert (base64.b64encode(PICTURE).decode() in json.dumps(upstream["request"])) is sent_picture

    view, contents = archived_files(service, task_id, env)
    assert view["type"] == type_name and view["external_task_id"] == external_id
    assert len(contents) == len(outputs)
    for data in contents:
        assert data[4:8] == b"ftyp" if kind.output is Output.VIDEO else data.startswith(b"\x89PNG")
    # The library's Base64 picture is in the archive's inputs/, as any client's is.
    key = (view["archived_videos"] or view["archived_images"])[0]["key"]
    metadata = json.loads((Path(env["ARCHIVE_URL"]) / key).with_name("metadata.json").read_text())
    pictures = [i for i in metadata["inputs"] if i["sha256"] == hashlib.sha256(PICTURE).hexdigest()]
    assert bool(pictures) is sent_picture


def test_the_gateway_layout_takes_the_same_library(library: Library, running, simulator, env) -> None:
    """A library configured for a gateway (`https://<gateway>/kling`) switches the same way."""
    service, _ = running
    simulator.state.set_default({"steps": [{"status": "succeed", "delay": 0.2}]})
    answer = library.drive(CALLS["generations"], {"prompt": "a kite over dunes"}, prefix="/kling")
    assert answer["done"]["data"]["task_status"] == "succeed"
    view, (image,) = archived_files(service, answer["created"]["data"]["task_id"], env)
    assert view["type"] == "generations" and image.startswith(b"\x89PNG")


def test_refusals_reach_the_library_as_kling_answers_them(library: Library, running, simulator) -> None:
    """The library raises Kling's code, HTTP status and message: a token signed with another secret
    (401), and a body Kling's rules refuse that the library lets through (400, code 1201)."""
    wrong_secret = library.run(CALLS["text2video"], {"prompt": "p"}, secret="another-secret-0123456789abcdef")
    assert wrong_secret["error"]["httpStatus"] == 401 and wrong_secret["error"]["code"] in (1000, 1002)

    refused = library.run(CALLS["image2video"], {"image": "not an image", "prompt": "p"})["error"]
    assert (refused["httpStatus"], refused["code"]) == (400, 1201) and "image" in refused["message"]
    assert simulator.state.tasks() == []


def test_a_task_queued_at_the_accounts_limit_is_followed_by_its_task_id(
    node: str, tls, env, simulator
) -> None:
    """At the account's limit the service queues a task (202, `queued`) where Kling would refuse it
    (1303). Kling always answers a create with a task_id, and the library polls by it: a queued task's
    is its external_task_id until Kling gives it one, and the library follows it to the end."""
    service, server, service_env = make_service(
        env, KLING_MAX_CONCURRENCY="1", SUBMIT_WAIT_S="0", ARCHIVE_RETRY_BASE_S="0"
    )
    workers = Workers(service_env)
    front = LiveServer(ssl_context=tls[0]).start(service.app)
    try:
        workers.start()
        service.http.headers.update(bearer())
        simulator.state.set_default({"steps": [{"status": "succeed", "delay": 0.3}]})
        # The holder keeps the slot until the library's task is queued behind it, however long Node
        # takes to start: Kling finishes it at once but says so only when the test calls back for it.
        simulator.state.set_scenario("holder", {"steps": [{"status": "succeed", "delay": 0, "send": False}]})
        holder = {"prompt": "holds the only slot", "external_task_id": "holder"}
        held = service.http.post(TASK_TYPES["text2video"].path, json=holder)
        assert held.status_code == 200
        holder_task_id = held.json()["data"]["task_id"]

        def free_the_slot_once_one_waits() -> int:
            wait_for(lambda: service.services.admission.waiting() >= 1, timeout=120, what="a task queued")
            finished = {"task_id": holder_task_id, "task_status": "succeed"}
            return post_callback(service, "holder", finished).status_code

        with ThreadPoolExecutor(max_workers=1) as pool:
            freed = pool.submit(free_the_slot_once_one_waits)
            answer = Library(node, front.url, tls[1]).drive(CALLS["text2video"], {"prompt": "waits its turn"})
            assert freed.result(timeout=10) == 200

        created, done = answer["created"]["data"], answer["done"]["data"]
        external_id = created["task_info"]["external_task_id"]
        assert created["task_status"] == "queued" and created["task_id"] == external_id
        assert done["task_status"] == "succeed" and done["task_id"] not in ("", external_id)  # Kling's
        assert [task["external_task_id"] for task in simulator.state.tasks()] == ["holder", external_id]
        view, (video,) = archived_files(service, external_id, env)
        assert view["task_id"] == done["task_id"] and video[4:8] == b"ftyp"
    finally:
        front.stop()
        workers.stop()
        server.stop()
        service.http.close()
