"""``handforge models fetch`` when the hub answers that the repository is missing, private or gated: said so, not
"without network" (runwayml/stable-diffusion-v1-5, the id most SD 1.5 guides give, is gone from the hub). The hub
is a loopback HTTP server answering as huggingface.co does (status and X-Error-Code), found through HF_ENDPOINT."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _hub(status: int, code: str):
    class Answer(http.server.BaseHTTPRequestHandler):
        def _answer(self):
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", "answered by the test's hub")
            self.send_header("Content-Type", "application/json")
            body = b'{"error": "answered by the test\'s hub"}'
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = _answer

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize("status, code, says", [
    (404, "RepoNotFound", ("the Hugging Face Hub has no model runwayml/stable-diffusion-v1-5, or it is private "
                           "(RepositoryNotFoundError): check the id on https://huggingface.co/runwayml/"
                           "stable-diffusion-v1-5 (or log in, `hf auth login`), or fetch one of sd15,")),
    (403, "GatedRepo", ("runwayml/stable-diffusion-v1-5 is gated on the Hugging Face Hub: accept its terms on "
                        "https://huggingface.co/runwayml/stable-diffusion-v1-5 and log in (`hf auth login`)")),
])
def test_the_hubs_refusal_is_said_in_its_words_leaving_nothing(status, code, says, tmp_path):
    """Before: "cannot download runwayml/stable-diffusion-v1-5 from the Hugging Face Hub (RepositoryNotFoundError);
    without network, copy the weights here and use `handforge models import`", the network fine."""
    hub = _hub(status, code)
    try:
        models = tmp_path / "models"
        env = {**os.environ, "HANDFORGE_MODELS_DIR": str(models), "HF_ENDPOINT": f"http://127.0.0.1:{hub.server_port}",
               "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1", "HANDFORGE_CONFIG": str(
                   tmp_path / "none.toml"), "PYTHONPATH": os.pathsep.join([str(REPO / "backend"), str(REPO / "shared")])}
        env.pop("HF_HUB_OFFLINE", None)
        done = subprocess.run([sys.executable, "-m", "handforge", "models", "fetch", "runwayml/stable-diffusion-v1-5",
                               "--kind", "sd"], check=False, env=env, capture_output=True, text=True, timeout=120)
    finally:
        hub.shutdown()
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "without network" not in done.stderr, done.stderr
    assert not any((models / "sd").iterdir())  # (no partial folder left)
