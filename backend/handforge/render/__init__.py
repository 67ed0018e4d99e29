"""Every image the backend draws: one camera model (``camera``), the GL rasteriser (``gl``: mesh
images, instance masks, depth, normals), 2D skeleton overlays (``overlay``) and Blender RGB
(``blender``: the bpy worker)."""
