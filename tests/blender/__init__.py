"""Scripts that run inside Blender (the bpy module) in a subprocess, and the harness that runs them."""
