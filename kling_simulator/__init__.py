"""A fake of Kling's task API (image2video, text2video, multi-image to video, and the image types, image
generations, virtual try-on, multi-image to image and image expansion, whose results are small real
PNGs, `n` of them), and Kling's unified API (kling-3.0 text to video, image to video and omni video,
`GET /tasks`: kling_simulator/unified.py), served on loopback for the run command, tests and benchmarks.

    with SimulatorServer(token="t") as sim:       # or access_key=..., secret_key=... for JWT auth
        sim.state.set_default({"steps": [{"status": "succeed", "delay": 0.1}]})
        sim.state.set_scenario("my-ext-id", {"shape": "new", "webhook_secret": "whsec_..."})
        ...  # point the client at sim.url (or sim.url + "/kling")
        sim.state.tasks(), sim.state.callbacks(), sim.state.max_open_seen, sim.state.face_sessions()

Scenario keys: steps [{status, delay, send, copies, message}], shape (legacy|new), webhook_secret,
before_response, create_error {http, code, message, after_create}, videos, video_files [name, ...] (the
videos, or an image task's images, point at those extra files), max_open (default scenario only).

Extra files for download tests, served at /files/extra/<name> without auth (see `SimState.add_file`):
        sim.state.add_file("big.mp4", size=8 << 20, faults=["truncate", "503"])
        sim.state.file_requests(), sim.state.expected_sha256("big.mp4")

Control API without auth: PUT /_sim/default, PUT /_sim/scenarios/<external_task_id>, GET /_sim/tasks,
GET /_sim/callbacks, POST /_sim/reset, PUT /_sim/files/<name> {size, faults, ranges, redirect_to},
GET /_sim/file-requests.
"""

from .scenario import DEFAULT_SCENARIO
from .server import SimulatorServer
from .state import SimState

__all__ = ["DEFAULT_SCENARIO", "SimState", "SimulatorServer"]
