"""The live preview of a running job, drawn in the Jobs panel: the latest ``preview`` array a job's progress
carried (the image engines send their latents as small RGB, an eighth of the image's side, at each step).

Held in a ``bpy.utils.previews`` collection, not as an image datablock: nothing enters the .blend or the
undo history while a job runs, and an undo during the job cannot take the preview away under it.
"""

from __future__ import annotations

import bpy
import bpy.utils.previews
import numpy as np

MAX_SIDE = 1024  # a preview is small (512² images send 64²): anything larger is not one, and is not drawn

_collection = None
# job id → the arrays last shown, held (progress replaces them; the same object: skipped). Not their id(): a new
# dict can take a freed one's address, and a new step was then skipped as shown
_shown: dict[str, object] = {}


def preview_pixels(arrays) -> np.ndarray | None:
    """Blender's RGBA float pixels, rows bottom to top, (h, w, 4), of the first image of ``arrays["preview"]``
    ((N, h, w, 3|4) or (h, w, 3|4), uint8 or floats in 0..1); None where there is none or it is no image
    (arriving arrays are checked: a malformed one is not drawn, the job carries on)."""
    image = arrays.get("preview") if hasattr(arrays, "get") else None
    if not isinstance(image, np.ndarray) or image.ndim not in (3, 4) or image.size == 0:
        return None
    if image.ndim == 4:
        image = image[0]
    height, width, channels = image.shape
    if channels not in (3, 4) or max(height, width) > MAX_SIDE:
        return None
    if image.dtype == np.uint8:
        pixels = image.astype(np.float32) / 255.0
    elif image.dtype.kind == "f" and np.isfinite(image).all():
        pixels = np.clip(image, 0.0, 1.0).astype(np.float32)
    else:
        return None
    if channels == 3:
        pixels = np.concatenate([pixels, np.ones((height, width, 1), np.float32)], axis=-1)
    return np.ascontiguousarray(pixels[::-1])


def show(job_id: str, arrays) -> bool:
    """Draw ``arrays``' preview for job ``job_id`` if it is new; True when the preview changed."""
    global _collection
    if not arrays or _shown.get(job_id) is arrays:
        return False
    _shown[job_id] = arrays
    pixels = preview_pixels(arrays)
    if pixels is None:
        return False
    if _collection is None:
        _collection = bpy.utils.previews.new()
    preview = _collection.get(job_id) or _collection.new(job_id)
    size = (pixels.shape[1], pixels.shape[0])
    for set_size, values in (("image_size", "image_pixels_float"), ("icon_size", "icon_pixels_float")):
        setattr(preview, set_size, size)
        getattr(preview, values).foreach_set(pixels.ravel())
    return True


def icon(job_id: str) -> int:
    """The icon id of job ``job_id``'s preview (0: none yet, or no UI to draw it)."""
    preview = _collection.get(job_id) if _collection is not None else None
    return preview.icon_id if preview is not None else 0


def pixels(job_id: str) -> np.ndarray | None:
    """The preview's RGBA pixels (h, w, 4), rows bottom to top, as Blender holds them (None: none)."""
    preview = _collection.get(job_id) if _collection is not None else None
    if preview is None:
        return None
    width, height = preview.image_size
    out = np.empty(width * height * 4, np.float32)
    preview.image_pixels_float.foreach_get(out)
    return out.reshape(height, width, 4)


def drop(job_id: str) -> None:
    """The job ended: its preview goes."""
    _shown.pop(job_id, None)
    if _collection is not None and job_id in _collection:
        # del, not pop: the collection is a dict whose pop skips Blender's release, and each job's pixels stayed
        del _collection[job_id]


def clear() -> None:
    global _collection
    _shown.clear()
    if _collection is not None:
        bpy.utils.previews.remove(_collection)
        _collection = None
