"""The export engine: labelled renders of a Blender scene's hands and cameras (``export_renders``)."""
