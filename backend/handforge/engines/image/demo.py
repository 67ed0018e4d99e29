"""The demo's image step."""

from __future__ import annotations

from pathlib import Path


def demo(out: Path) -> None:
    """One labelled generated image (the export's ``generate`` engine) when Stable Diffusion weights and a
    guidance module or ControlNets are configured; otherwise one line saying what to configure. Nothing is
    downloaded."""
    import time

    from handforge import config
    from handforge.engines.image.settings import CONTROLNETS, GUIDANCE, SD_MODEL
    from handforge.export.run import export
    from handforge.export.spec import parse_spec

    if config.value(SD_MODEL.key) is None or (config.value(GUIDANCE.key) is None
                                              and config.value(CONTROLNETS.key) is None):
        print(f"image generation: skipped (no weights configured): set {SD_MODEL.key} ({SD_MODEL.env}) and "
              f"{GUIDANCE.key} ({GUIDANCE.env}) or {CONTROLNETS.key} ({CONTROLNETS.env}); `handforge models import "
              "PATH --kind sd|guidance|controlnet` copies weights you have into the models folder and prints the "
              "setting to add (an import alone sets nothing)")
        if (out / "generated").exists():  # (a rerun left an earlier demo's image there, unsaid, beside "skipped")
            print(f"  {out / 'generated'} holds an earlier demo's image, not made by this run")
        return
    engine = "attentionhand" if config.value(GUIDANCE.key) is not None else "controlnet"
    spec = parse_spec({"seed": 0, "samples": 1, "width": 512, "height": 512, "render": {"engine": "generate"},
                       "generate": {"engine": engine, "prompts": ["two hands, studio photo, soft light"]}})
    started = time.perf_counter()
    export(spec, out / "generated", command="handforge demo", progress=False)
    print(f"image generation: one {engine} image with its labels in {out / 'generated'} "
          f"({time.perf_counter() - started:.0f} s)")
