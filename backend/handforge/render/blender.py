"""Realistic RGB from Blender: one bpy worker process per export (``blender_worker``), scene built
once, every sample a vertex update, a camera and lights, and a render (Workbench or Cycles).

bpy runs in its own process: its state is process-global and a crash there must not take the
export down. Vertices travel as ``.npy`` files in a private scratch folder (``handforge.scratch``: one
left by a killed export is removed by the next renderer started); requests and replies are JSON lines
(never pickle).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from handforge.render.camera import Camera, clip_range, to_blender
from handforge.scratch import scratch_folder
from handforge_shared.skeleton import MODEL_TO_BLENDER


def blender_missing(engine: str) -> str | None:
    """Why RGB of render ``engine`` cannot be made here, or None: Workbench and Cycles render in Blender's Python
    module (bpy), which the `backend` extra leaves out (the export's Blender worker ended in its traceback)."""
    import importlib.util

    if engine in ("workbench", "cycles") and importlib.util.find_spec("bpy") is None:
        return (f"render engine {engine!r} renders the RGB images in Blender, whose Python module (bpy) is not "
                "installed where the backend runs")
    return None


BLENDER_PIN = "bpy==4.5.15"  # Blender 4.5 as a Python module (Python 3.11), as pyproject.toml's dev extra has it
BLENDER_FIX = f"pip install {BLENDER_PIN} (Python 3.11) into the backend's environment"


REPLY = "HANDFORGE_WORKER "
# what a BlenderHung says to do about renders that slow, unless its caller names its own knob (``slow_hint``)
SLOW_HINT = "allow them more time (BlenderRGB's timeout=SECONDS)"
# Workbench's anti-aliasing: Blender's own values of scene.display.render_aa (bpy 4.5), cheapest first; "8" is
# Blender's default and what every export before the setting rendered with
ANTIALIASING = ("OFF", "FXAA", "5", "8", "11", "16", "32")
# s: a Blender not ready this long after its start (and the timeout) is hung. Its start imports bpy (seconds, more on
# a cold disk): a timeout sized for quick renders must not count that as a hang, nor fail every restart
START_TIMEOUT_FLOOR = 60.0


class BlenderRenderError(RuntimeError):
    pass


class BlenderHung(BlenderRenderError):
    """Blender gave no answer within the timeout: its worker was stopped (not retried: it would hang again)."""


@dataclasses.dataclass(eq=False)
class _Render:
    """A render sent to Blender: its arguments (sent again to a restarted Blender) and its files' slot."""

    args: tuple
    slot: int
    retried: bool = False


class BlenderRGB:
    """``with BlenderRGB("workbench") as rgb: rgba = rgb(scene, camera, hands)``; ``rebuild=True``
    builds a fresh scene for every image (the naive baseline of ``benchmarks/export.py``).
    ``timeout``: seconds Blender may take to answer one render (``math.inf``: no limit) before it counts
    as hung (a stuck render, a GL deadlock), is stopped and the render fails with ``BlenderHung``; its
    start may take ``START_TIMEOUT_FLOOR`` at least. ``slow_hint``: what ``BlenderHung`` tells the caller's
    user to do if renders are that slow, with the caller's own knob (``handforge export --sample-timeout``)."""

    # renders sent ahead: the export sends sample i + 1's before it collects sample i's, so Blender starts
    # it as soon as it is done with i instead of waiting while the next scene is sampled and posed
    IN_FLIGHT = 2

    # (the scale-out's default too: enough for Cycles at high sample counts on a CPU)
    def __init__(self, engine: str = "workbench", samples: int = 16, rebuild: bool = False, timeout: float = 600.0,
                 antialiasing: str = "8", slow_hint: str = SLOW_HINT):
        if engine not in ("workbench", "cycles"):
            raise ValueError(f"unknown Blender engine {engine!r}: use 'workbench' or 'cycles'")
        if antialiasing not in ANTIALIASING:  # (Blender's error would come per render, from its worker)
            raise ValueError(f"Workbench anti-aliasing {antialiasing!r}: use one of {', '.join(ANTIALIASING)}")
        if not timeout > 0:  # (NaN too)
            raise ValueError(f"Blender timeout: expected a positive number of seconds, got {timeout}")
        self.engine, self.samples, self.rebuild, self.timeout = engine, samples, rebuild, timeout
        self.antialiasing = antialiasing  # Workbench's (scene.display.render_aa); unused by Cycles
        self.slow_hint = slow_hint
        self._proc: subprocess.Popen | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()  # its stdout's lines (None: its end), see _start
        self._hung = False  # stopped for giving no answer in time (see _reply)
        self._log = None
        self._topology: dict[str, tuple[int, ...]] | None = None
        self._faces: dict[str, Path] = {}  # each side's faces file, as the requests name it
        self._meshes = 0  # topologies sent: the faces files alternate (one in flight may still read the last)
        self._pending: collections.deque[_Render] = collections.deque()  # sent, not answered yet, oldest first

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
                                      encoding="utf-8", errors="replace",  # (its replies are ASCII JSON)
                                      # Blender's own temporary folder inside ours, removed with it (TEMP and TMP:
                                      # Windows's names); its text in UTF-8 whatever the system's code page
                                      env={**os.environ, "BLENDER_USER_RESOURCES": str(self.work / "user"),
                                           "TMPDIR": str(self.work), "TEMP": str(self.work), "TMP": str(self.work),
                                           "PYTHONIOENCODING": "utf-8"})
        self._topology = None  # a new process holds no meshes yet
        # A pipe read has no timeout that works everywhere (select takes no pipes on Windows, and the text
        # stream buffers lines a select on its fd would not see): a thread reads, _reply waits on the queue
        self._lines, self._hung = queue.Queue(), False
        threading.Thread(target=_read_lines, args=(self._proc.stdout, self._lines), daemon=True,
                         name=f"blender-worker-{self._proc.pid}-stdout").start()
        self.version = self._reply(max(self.timeout, START_TIMEOUT_FLOOR), "started").get("ready")

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
        # (its stdout: closed by its reader at its end)

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

    def _reply(self, timeout: float | None = None, awaited: str = "answered a render") -> dict[str, Any]:
        """The worker's next reply (``timeout``: ``self.timeout`` unless given); its Blender killed when it
        gives none in time (``BlenderHung``) or a ``BlenderRenderError`` when it answers with an error or dies."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            try:  # (Queue.get takes no infinite timeout)
                line = self._lines.get(timeout=None if math.isinf(timeout) else max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self._proc.kill()
                self._proc.wait()
                self._hung = True
                self._log.write(f"\n--- the Blender worker gave no answer for {timeout:g} s: stopped ---\n")
                raise BlenderHung(
                    f"Blender had not {awaited} after {timeout:g} s (a render that hung, a GL deadlock?): its "
                    "worker was stopped, and the next render starts a new one. If renders are this slow (Cycles "
                    f"at many samples), {self.slow_hint}") from None
            if line is None:
                break
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
        render it died in is tried once more in the new one: a worker must not fail every later sample.
        One that gave no answer within ``timeout`` is stopped and its render fails (``BlenderHung``) without
        that retry (the same scene would likely hang again, for as long); the next render starts a new one."""
        return self.submit(camera, vertices, faces, target, lighting, skin_tone)()

    def submit(self, camera: Camera, vertices: dict[str, np.ndarray], faces: dict[str, np.ndarray], target: Any,
               lighting: dict[str, Any], skin_tone: str) -> Callable[[], np.ndarray]:
        """``render`` in two halves: the request is sent now and Blender renders while the caller does
        other work (the GL pass and the labels, the next sample's scene); the returned ``collect()`` waits
        for the image (or raises, after the same one retry in a restarted Blender as ``render``). Up to
        ``IN_FLIGHT`` renders are sent ahead, rendered in order: a later ``submit`` past that, or a later
        render's ``collect``, first waits out (and drops) the replies of older ones nobody collected."""
        while len(self._pending) >= self.IN_FLIGHT:
            self._drop_oldest()
        if self._proc.poll() is not None:
            self._restart()
        # its own files: the render before it may still be reading its vertices or writing its image
        render = _Render((camera, vertices, faces, target, lighting, skin_tone),
                         slot=1 - self._pending[-1].slot if self._pending else 0)
        try:
            self._send(render)
        except BrokenPipeError:
            if self._proc.poll() is None:
                raise
            self._restart()  # (sends those in flight again)
            self._send(render)
            render.retried = True
        self._pending.append(render)

        def collect() -> np.ndarray:
            if render not in self._pending:
                raise RuntimeError("this render was collected already, or dropped by a later one")
            while self._pending[0] is not render:
                self._drop_oldest()
            if self._hung:
                self._restart()  # stopped as hung (on an older render): this one is sent again to a new one
            try:
                try:
                    return self._receive()
                except BlenderHung:
                    raise
                except BlenderRenderError:
                    if render.retried or self._proc.poll() is None:  # Blender answered with an error: this scene's own failure
                        raise
                    render.retried = True
                    self._restart()
                    return self._receive()
            except BlenderRenderError:
                # Blender died in it again: failed, it must not go to the next Blender (a third crash, a third start)
                if self._pending and self._pending[0] is render:
                    self._pending.popleft()
                raise

        return collect

    def _drop_oldest(self) -> None:
        """Wait for (and drop) the reply of the oldest render in flight: nobody collects it (its caller failed)."""
        self._pending.popleft()
        try:
            self._reply()
        except BlenderRenderError:
            pass  # its failure was nobody's to report; a dead process is restarted by the caller

    def _restart(self) -> None:
        """Start Blender again and send it the renders it had not answered, in their order."""
        self._stop()
        self._log.write(f"\n--- the Blender worker stopped (exit {self._proc.returncode}): started again ---\n")
        self._start()
        for render in self._pending:
            self._send(render)

    def _send(self, render: _Render) -> None:
        camera, vertices, faces, target, lighting, skin_tone = render.args
        request: dict[str, Any] = {"engine": self.engine, "samples": self.samples, "antialiasing": self.antialiasing,
                                   "rebuild": self.rebuild,
                                   "vertices": {}, "faces": {}, "lighting": lighting, "skin_tone": skin_tone,
                                   "camera": to_blender(camera, world_to_blender=MODEL_TO_BLENDER).to_dict(),
                                   "clip": clip_range(camera, list(vertices.values())),  # GL's: the masks
                                   "target": (MODEL_TO_BLENDER @ np.asarray(target, dtype=np.float64)).tolist(),
                                   "out": str(self.work / f"render_{render.slot}.png")}
        # The worker keeps its meshes between requests; new sides or a new topology (a forearm
        # switched on, another hand model) rebuild them.
        topology = {side: np.asarray(faces[side]).shape for side in vertices}
        if topology != self._topology:
            request["rebuild"], self._topology = True, topology
            self._meshes += 1
            for side in vertices:
                self._faces[side] = self.work / f"{side}_faces_{self._meshes % 2}.npy"
                _hand_off(self._faces[side], np.asarray(faces[side], dtype=np.int32))
        for side, verts in vertices.items():
            path = self.work / f"{side}_vertices_{render.slot}.npy"
            _hand_off(path, (np.asarray(verts) @ MODEL_TO_BLENDER.T).astype(np.float32))
            request["vertices"][side] = str(path)
            request["faces"][side] = str(self._faces[side])
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()

    def _receive(self) -> np.ndarray:
        """The oldest render's image (its reply taken off ``_pending``, an error or a hang too; not a Blender that
        died)."""
        try:
            reply = self._reply()
        except BlenderHung:
            self._pending.popleft()  # (not sent again to the next Blender)
            raise
        except BlenderRenderError:
            if self._proc.poll() is None:  # its answer (an error): read
                self._pending.popleft()
            raise
        camera = self._pending.popleft().args[0]
        out = Path(reply["out"])
        _check_render_written(out, camera.width * camera.height * 4)
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


def _hand_off(path: Path, array: np.ndarray) -> None:
    """Save ``array`` for the worker to read; a full temporary folder stops the run as a full dataset folder does
    (``write_error``: numpy's short write had no errno, and every later sample was rendered to fail the same way)."""
    from handforge.disk import write_error

    try:
        np.save(path, array, allow_pickle=False)
    except OSError as exc:
        raise write_error(exc, path) from None


def _check_render_written(path: Path, room_needed: int) -> None:
    """Raise when Blender's image ``path`` was cut short: Blender reports a render it could not write whole as
    done (PIL then said "cannot identify image file"). With less room left on its disk than the image's raw
    size, that is a full disk (``ENOSPC``, which stops the run); otherwise the render's own failure."""
    import errno

    from handforge.disk import png_cut_short

    if not png_cut_short(path):
        return
    try:
        disk = os.statvfs(path.parent)
        full = disk.f_bavail * disk.f_frsize < room_needed
    except (OSError, AttributeError):  # (no statvfs on Windows)
        full = False
    if full:
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (Blender's render was written in part)", str(path))
    raise BlenderRenderError(f"Blender wrote {path} in part (cut short), and its disk has room: see its log")


def _read_lines(stdout, lines: queue.Queue) -> None:
    """``stdout``'s lines into ``lines``, then None at its end (the worker exited, or was killed)."""
    try:
        with stdout:
            for line in stdout:
                lines.put(line)
    finally:
        lines.put(None)
