"""Realistic RGB from Blender: one bpy worker process per export (``blender_worker``), scene built
once, every sample a vertex update, a camera and lights, and a render (Workbench or Cycles).

bpy runs in its own process: its state is process-global and a crash there must not take the
export down. Vertices travel as ``.npy`` files in a private scratch folder (``handforge.scratch``: one
left by a killed export is removed by the next renderer started); requests and replies are JSON lines
(never pickle).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from handforge.render.camera import Camera, clip_range, to_blender
from handforge.scratch import scratch_folder
from handforge_shared.skeleton import MODEL_TO_BLENDER

REPLY = "HANDFORGE_WORKER "


class BlenderRenderError(RuntimeError):
    pass


class BlenderRGB:
    """``with BlenderRGB("workbench") as rgb: rgba = rgb(scene, camera, hands)``; ``rebuild=True``
    builds a fresh scene for every image (the naive baseline of ``benchmarks/export.py``)."""

    def __init__(self, engine: str = "workbench", samples: int = 16, rebuild: bool = False, timeout: float = 300.0):
        if engine not in ("workbench", "cycles"):
            raise ValueError(f"unknown Blender engine {engine!r}: use 'workbench' or 'cycles'")
        self.engine, self.samples, self.rebuild, self.timeout = engine, samples, rebuild, timeout
        self._proc: subprocess.Popen | None = None
        self._log = None
        self._topology: dict[str, tuple[int, ...]] | None = None
        self._pending: object | None = None  # the ticket of a render submitted and not collected yet

    def __enter__(self) -> "BlenderRGB":
        self.work = scratch_folder("blender")
        try:
            self._log = open(self.work / "blender.log", "w+", encoding="utf-8", errors="replace")
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        # (its parent's pid: it dies with this process, see blender_worker.main)
        self._proc = subprocess.Popen([sys.executable, "-m", "handforge.render.blender_worker", str(os.getpid())],
                                      cwd=self.work,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True,
                                      encoding="utf-8",
                                      # Blender's own temporary folder inside ours, removed with it (TEMP and TMP:
                                      # Windows's names); its text in UTF-8 whatever the system's code page
                                      env={**os.environ, "BLENDER_USER_RESOURCES": str(self.work / "user"),
                                           "TMPDIR": str(self.work), "TEMP": str(self.work), "TMP": str(self.work),
                                           "PYTHONIOENCODING": "utf-8"})
        self._topology = None  # a new process holds no meshes yet
        self._pending: object | None = None  # and owes no reply
        self.version = self._reply().get("ready")

    def _stop(self, abandon: bool = False) -> None:
        """End the Blender process: asked to (it finishes its render), or at once when ``abandon``."""
        if abandon and self._proc.poll() is None:
            self._proc.terminate()
        try:
            self._proc.stdin.close()
        except BrokenPipeError:  # it died (killed, out of memory): nothing left to tell it
            pass
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc.stdout.close()

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._proc is not None:
                # left by an error, Ctrl-C or SIGTERM: a Cycles render nobody will read could hold the exit
                # (and its scratch folder) for the 30 s of the wait below
                self._stop(abandon=bool(exc) and exc[0] is not None)
        finally:
            if self._log is not None:
                self._log.close()
            shutil.rmtree(self.work, ignore_errors=True)

    def _reply(self) -> dict[str, Any]:
        for line in self._proc.stdout:
            if line.startswith(REPLY):
                reply = json.loads(line[len(REPLY):])
                if "error" in reply:
                    raise BlenderRenderError(f"Blender failed:\n{reply['error']}")
                return reply
        try:  # its output ends as it exits: its exit status follows at once
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.seek(0)
        tail = "\n".join(self._log.read().strip().splitlines()[-20:])
        raise BlenderRenderError(f"the Blender worker stopped (exit {self._proc.returncode}):\n{tail}")

    def render(self, camera: Camera, vertices: dict[str, np.ndarray], faces: dict[str, np.ndarray], target: Any,
               lighting: dict[str, Any], skin_tone: str) -> np.ndarray:
        """(H, W, 4) float32 RGBA in [0, 1] (sRGB, straight alpha) of the hands (world = model frame).
        A Blender process that has died (killed, out of memory, a crash in GL) is started again, and a
        render it died in is tried once more in the new one: a worker must not fail every later sample."""
        return self.submit(camera, vertices, faces, target, lighting, skin_tone)()

    def submit(self, camera: Camera, vertices: dict[str, np.ndarray], faces: dict[str, np.ndarray], target: Any,
               lighting: dict[str, Any], skin_tone: str) -> Callable[[], np.ndarray]:
        """``render`` in two halves: the request is sent now and Blender renders while the caller does
        other work (the GL pass and the labels); the returned ``collect()`` waits for the image (or
        raises, after the same one retry in a restarted Blender as ``render``). One render is in flight
        at a time: a later ``submit`` first waits out (and drops) a reply nobody collected."""
        args = (camera, vertices, faces, target, lighting, skin_tone)
        self._drain()
        if self._proc.poll() is not None:
            self._restart()
        retried = False
        try:
            self._send(*args)
        except BrokenPipeError:
            if self._proc.poll() is None:
                raise
            self._restart()
            self._send(*args)
            retried = True
        self._pending = ticket = object()

        def collect() -> np.ndarray:
            if self._pending is not ticket:  # the reply waiting (if any) is another render's
                raise RuntimeError("this render was collected already, or dropped by a later submit")
            self._pending = None
            try:
                return self._receive()
            except (BrokenPipeError, BlenderRenderError):
                if retried or self._proc.poll() is None:  # Blender answered with an error: this scene's own failure
                    raise
                self._restart()
                self._send(*args)
                return self._receive()

        return collect

    def _drain(self) -> None:
        """Wait for (and drop) the reply of a render submitted but not collected (its caller failed)."""
        if self._pending is not None:
            self._pending = None
            try:
                self._reply()
            except BlenderRenderError:
                pass  # its failure was nobody's to report; a dead process is restarted by the caller

    def _restart(self) -> None:
        self._stop()
        self._log.write(f"\n--- the Blender worker stopped (exit {self._proc.returncode}): started again ---\n")
        self._start()

    def _send(self, camera: Camera, vertices: dict[str, np.ndarray], faces: dict[str, np.ndarray], target: Any,
              lighting: dict[str, Any], skin_tone: str) -> None:
        request: dict[str, Any] = {"engine": self.engine, "samples": self.samples, "rebuild": self.rebuild,
                                   "vertices": {}, "faces": {}, "lighting": lighting, "skin_tone": skin_tone,
                                   "camera": to_blender(camera, world_to_blender=MODEL_TO_BLENDER).to_dict(),
                                   "clip": clip_range(camera, list(vertices.values())),  # GL's: the masks
                                   "target": (MODEL_TO_BLENDER @ np.asarray(target, dtype=np.float64)).tolist(),
                                   "out": str(self.work / "render.png")}
        # The worker keeps its meshes between requests; new sides or a new topology (a forearm
        # switched on, another hand model) rebuild them.
        topology = {side: np.asarray(faces[side]).shape for side in vertices}
        if topology != self._topology:
            request["rebuild"], self._topology = True, topology
            for side in vertices:
                np.save(self.work / f"{side}_faces.npy", np.asarray(faces[side], dtype=np.int32), allow_pickle=False)
        for side, verts in vertices.items():
            path = self.work / f"{side}_vertices.npy"
            np.save(path, (np.asarray(verts) @ MODEL_TO_BLENDER.T).astype(np.float32), allow_pickle=False)
            request["vertices"][side] = str(path)
            request["faces"][side] = str(self.work / f"{side}_faces.npy")
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()

    def _receive(self) -> np.ndarray:
        out = Path(self._reply()["out"])
        with Image.open(out) as img:
            return np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0

    def __call__(self, scene, camera: Camera, hands: dict[str, dict[str, np.ndarray]]) -> np.ndarray:
        """The export loop's interface: a sampled scene and its posed hands."""
        return self.submit_sample(scene, camera, hands)()

    def submit_sample(self, scene, camera: Camera, hands: dict[str, dict[str, np.ndarray]]) -> Callable[[], np.ndarray]:
        """``__call__`` in two halves (see ``submit``): the export loop labels while Blender renders."""
        target = np.concatenate([h["keypoints"] for h in hands.values()]).mean(axis=0)
        return self.submit(camera, {s: h["vertices"] for s, h in hands.items()},
                           {s: h["faces"] for s, h in hands.items()}, target, scene.lighting, scene.skin_tone)
