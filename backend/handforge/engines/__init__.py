"""Engines: one folder each, ``handforge/engines/<engine>/``, and nothing outside it.

The split follows the model codebases of the field (MDM keeps model, diffusion, training, sampling
and data apart; diffusers makes models, schedulers and pipelines swappable):

    model.py      the networks: diffusers ``ModelMixin`` + ``ConfigMixin`` subclasses
                  (``@register_to_config`` on ``__init__``); checkpoints are local folders written by
                  ``checkpoints.save_model`` and read by ``checkpoints.load_model`` (config JSON +
                  safetensors, never a hub download, never pickle)
    pipeline.py   sampling (diffusers schedulers; a ``DiffusionPipeline`` subclass where it fits)
    train.py      ``add_arguments(parser)`` + ``run(args) -> int`` for ``handforge train <engine>``;
                  the optimisation itself is ``handforge.training.loop.train``
    evaluate.py   ``add_arguments(parser)`` + ``run(args) -> int`` for ``handforge eval <engine>``
    settings.py   the engine's config keys (``config.register``), imported before train, evaluate, jobs
    jobs.py       ``register_jobs(registry)``: the server imports it at start, so it stays light
                  (import torch and diffusers inside the handlers); handlers get their models from
                  the server's model cache: ``ctx.pretrained(ModelClass, folder)``

This package itself must stay light too: the server imports it at start. A worked example engine
lives in ``tests/engines/example/``; README.md's "Adding an engine" walks through writing one, step by step.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from pathlib import Path

PACKAGE = __name__


def is_package(name: str) -> bool:
    """Whether ``name`` is an importable package, where engines can live (``--package``,
    ``--engine-package``): not a missing one, a relative name ('.foo': importlib raised ImportError or
    TypeError later) or a plain module ('os': scanning it raised AttributeError)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):  # a parent package is missing, or a relative name
        return False
    return spec is not None and spec.submodule_search_locations is not None


def engines_with(module: str, package: str = PACKAGE) -> list[str]:
    """Names of the engines in ``package`` (``is_package``) that have a ``<engine>.<module>`` module (e.g. "train")."""
    root = importlib.import_module(package)
    found = []
    for info in pkgutil.iter_modules(root.__path__):
        if info.ispkg and importlib.util.find_spec(f"{package}.{info.name}.{module}") is not None:
            found.append(info.name)
    return sorted(found)


def unpackaged_with(module: str, package: str = PACKAGE) -> dict[str, Path]:
    """The folders of ``package`` that hold a ``<module>.py`` but no ``__init__.py``, by name: no package, so
    ``engines_with`` (pkgutil) skips them; a command names the missing file rather than "no such engine"."""
    root = importlib.import_module(package)
    return {path.parent.name: path.parent for folder in root.__path__
            for path in sorted(Path(folder).glob(f"*/{module}.py")) if not (path.parent / "__init__.py").is_file()}


def declare_settings(package: str, engine: str) -> None:
    """Import ``<package>.<engine>.settings`` if it exists, declaring the engine's config keys:
    ``handforge.config`` finds only ``handforge/**/settings.py`` itself, not an outside package's."""
    name = f"{package}.{engine}.settings"
    if importlib.util.find_spec(name) is not None:
        importlib.import_module(name)


__all__ = ["PACKAGE", "declare_settings", "engines_with", "is_package", "unpackaged_with"]
