"""The open two-hand pose and motion corpus (``handforge corpus``).

Modules, one job each: ``regions`` (named surface regions of a rig), ``placement`` (palm frames
in the scene), ``templates`` (two-hand interaction templates), ``resolver`` (penetration
resolution), ``motion`` (timelines, minimum-jerk transitions, overlays), ``generator`` (chunks of
clips from seeds), ``summary`` (statistics and figures), ``build`` (writing a corpus directory),
``preview`` (thumbnails). Single-hand poses and joint limits live in ``handforge_shared``
(``pose_library``, ``anatomy``), which the Blender add-on shares.
"""
