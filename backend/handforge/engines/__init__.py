"""Engines: one folder each (``handforge/engines/<engine>/``), found by the server through its
``jobs.py`` (``register_jobs(registry)``, see ``handforge.server.registry``)."""
