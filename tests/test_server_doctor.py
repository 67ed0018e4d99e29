"""`handforge doctor` tells a newcomer what works and exactly which setting to fill for what does not."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.light_status import light_statuses

pytestmark = pytest.mark.timeout(120)


def _doctor(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "handforge", "doctor", "--endpoint", "tcp://127.0.0.1:1", *args],
                          capture_output=True, text=True, timeout=100, env={**os.environ, **env})


def test_doctor_names_the_mano_setting_when_mano_is_not_configured():
    done = _doctor(HANDFORGE_MANO_DIR="")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for expected in ("HandForge 0.1.0 (wire protocol v1)", "torch ", "pyzmq", "Devices:", "cpu ",
                     "open     available", "mano     NOT available", "mano.model_dir = (not set)",
                     "HANDFORGE_MANO_DIR=<value>", "[mano]", "model_dir = \"<value>\"",
                     "\n  hands           available: hand_model, forward_hands\n",
                     "\n    attentionhand NOT available",  # the engines' names in one column, the longest's width
                     "none at tcp://127.0.0.1:1: start one with `handforge serve`"):
        assert expected in out, f"{expected!r} missing from:\n{out}"


def test_a_setting_five_engines_need_is_described_once_under_settings():
    """Before: image.sd_model's description and how to set it were printed nine times, in the reasons and fixes of
    attentionhand, controlnet, image, ihpt and transfer, above the Settings section that says them too."""
    out = _doctor(HANDFORGE_SD_MODEL="").stdout
    assert out.count("Stable Diffusion 1.x weights: a diffusers folder") == 1, out
    assert out.count("HANDFORGE_SD_MODEL=<value>") == 1, out
    assert "why: image.sd_model is not set (see Settings below)" in out
    assert "image.sd_model = (not set)" in out.split("Settings (")[1]
    # the composite engines (image, transfer) say it once too: "reference: controlnet: image.sd_model is not set
    # (see Settings below); attentionhand: image.sd_model is not set (...); ihpt: ..." before
    engines = out.split("Engines (")[1].split("Settings (")[0]
    assert engines.count("why: image.sd_model is not set (see Settings below)\n") == 2, engines
    assert "image.sd_model is not set" not in engines.replace("why: image.sd_model is not set", ""), engines


def test_a_composite_engine_waiting_for_several_settings_leaves_their_fixes_to_settings(tmp_path):
    """image and transfer joined their parts' fixes ("set HANDFORGE_IMAGE_GUIDANCE ...; set HANDFORGE_CONTROLNETS
    ...") under a fix: line, each again under Settings."""
    out = _doctor(HANDFORGE_SD_MODEL=str(tmp_path), HANDFORGE_IMAGE_GUIDANCE="", HANDFORGE_CONTROLNETS="",
                  HANDFORGE_TRANSFER_TARGET_GENERATOR="").stdout
    engines = out.split("Engines (")[1].split("Settings (")[0]
    assert "fix:" not in engines, engines
    assert "attentionhand: image.guidance is not set (see Settings below); controlnet: image.controlnets" in engines
    for variable in ("HANDFORGE_IMAGE_GUIDANCE", "HANDFORGE_CONTROLNETS", "HANDFORGE_TRANSFER_TARGET_GENERATOR"):
        assert out.count(f"{variable}=<value>") == 1, (variable, out)


def test_engines_a_job_kind_runs_are_listed_under_its_engine_and_an_unset_setting_once():
    """attentionhand, controlnet and ihpt (no job kinds of their own: image.generate's and image.transfer's
    `engine` parameter picks them) were listed beside the others as 'NOT available: no job kinds', and an
    unset setting read 'image.sd_model = (not set)   [from unset]'."""
    out = _doctor(HANDFORGE_SD_MODEL="").stdout
    engines = out.split("Engines (")[1].split("Settings (")[0]
    assert "no job kinds" not in engines, engines
    why = "           why: image.sd_model is not set (see Settings below)\n"
    # an engine's engines waiting for what it waits for say so, not the same line again (it was said 5 times)
    assert ("  image           NOT available: image.generate\n" + why
            + "    attentionhand NOT available (an engine of image.generate, for the same reason)\n"
            + "    controlnet    NOT available (an engine of image.generate, for the same reason)\n") in engines, engines
    assert ("  transfer        NOT available: image.transfer\n" + why
            + "    ihpt          NOT available (an engine of image.transfer, for the same reason)\n") in engines, engines
    assert engines.count("why:") == 2, engines
    settings = out.split("Settings (")[1]
    assert "  image.sd_model = (not set)\n" in settings and "[from unset]" not in settings, settings
    assert "[from default]" in settings  # (a value's source is still said)


def test_a_malformed_endpoint_is_one_line():
    # before: "none at 127.0.0.1:5799 (...): start one with `handforge serve`"
    done = subprocess.run([sys.executable, "-m", "handforge", "doctor", "--endpoint", "127.0.0.1:5799"],
                          capture_output=True, text=True, timeout=100)
    assert done.returncode == 2 and "use tcp://HOST:PORT" in done.stderr and "Traceback" not in done.stderr


def test_an_endpoint_libzmq_cannot_connect_to_is_refused_by_argparse():
    # before: "tcp://127.0.0.1:5780/" (or a path, query, user@ or space) passed the check, and after the device
    # probe the backend was "NOT usable: cannot connect to ...: Invalid argument", status 1
    from handforge_shared.protocol import parse_endpoint

    for text in ("tcp://127.0.0.1:5780/", "tcp://127.0.0.1:5780/x", "tcp://127.0.0.1:5780?x", "tcp://a b:5780",
                 "tcp://u@127.0.0.1:5780", "tcp://127.0.0.1:5780#x",
                 "tcp://\udcff:5780"):  # (a byte not UTF-8 on the command line: a codec error after the probe)
        with pytest.raises(ValueError, match="use tcp://HOST:PORT"):
            parse_endpoint(text)
    assert parse_endpoint(" tcp://[::1]:5780 ") == ("::1", 5780)
    assert parse_endpoint("tcp://localhost:5780") == ("localhost", 5780)
    done = subprocess.run([sys.executable, "-m", "handforge", "doctor", "--endpoint", "tcp://127.0.0.1:5799/"],
                          capture_output=True, text=True, timeout=100)
    assert done.returncode == 2 and done.stdout == "" and "use tcp://HOST:PORT" in done.stderr


def test_a_key_file_that_is_not_there_is_one_line_and_status_2(tmp_path):
    # before: after the device probe, "NOT usable: Invalid certificate file: ..." in the report, status 0
    (tmp_path / "server.key").write_text("")
    for server_key, secret, said in ((tmp_path / "nope.key", tmp_path / "server.key", "--curve-server-key"),
                                     (tmp_path / "server.key", tmp_path, "--curve-client-secret")):
        done = _doctor("--curve-server-key", str(server_key), "--curve-client-secret", str(secret))
        assert done.returncode == 2 and done.stdout == ""
        (line,) = done.stderr.splitlines()
        assert line.startswith(f"handforge doctor: error: argument {said}: ") and ("no such file" in line or
                                                                                  "is a folder" in line)


def test_key_files_that_are_no_keys_are_one_line_and_status_2(tmp_path):
    # before: after the device probe, "NOT usable: No public key found in afile" in the report, status 0
    import zmq.auth

    (tmp_path / "afile").write_text("not a key\n")
    zmq.auth.create_certificates(tmp_path, "server")
    for server_key, secret, said in ((tmp_path / "afile", tmp_path / "server.key_secret", "afile is not a CurveZMQ key"),
                                     (tmp_path / "server.key", tmp_path / "server.key", "holds no secret key")):
        done = _doctor("--curve-server-key", str(server_key), "--curve-client-secret", str(secret))
        assert done.returncode == 2 and done.stdout == "", done
        (line,) = done.stderr.splitlines()
        assert line.startswith("handforge doctor: ") and said in line, line


def test_doctor_json_is_what_hello_reports(tmp_path):
    done = _doctor("--json", HANDFORGE_MANO_DIR=str(tmp_path / "nowhere"))
    report = json.loads(done.stdout)
    assert {"versions", "devices", "hand_models", "kinds", "engines", "settings", "limits"} <= set(report)
    mano = report["hand_models"]["mano"]
    assert not mano["available"] and "HANDFORGE_MANO_DIR" in mano["hint"]
    # set already: the fix is the files or another folder (it said to set the variable that was set)
    assert mano["hint"] == (f"put the files in {tmp_path / 'nowhere'}, or point $HANDFORGE_MANO_DIR at the folder "
                            "that has them"), mano["hint"]
    setting = next(s for s in report["settings"] if s["key"] == "mano.model_dir")
    assert setting["source"] == "env" and setting["value"].endswith("nowhere")
    features = next(s for s in report["settings"] if s["key"] == "evaluation.features")
    assert features["source"] == "default" and features["value"].endswith("assets/features_v1")
    assert report["backend"]["running"] is False


def test_a_broken_config_file_is_said_once_and_a_misspelled_key_is_named(tmp_path):
    """A config file that does not parse: doctor reports it without a traceback per engine (about ten
    before), serve refuses to start in one line; a key no setting declares is named, not ignored."""
    broken = tmp_path / "broken.toml"
    broken.write_text("[mano\n")
    done = _doctor(HANDFORGE_CONFIG=str(broken))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr  # (0 before: scripts saw no fault)
    assert "PROBLEM: cannot read the HandForge config file" in done.stdout
    # every fix points at the file: MANO's said to add its setting to the file that cannot be read
    report = json.loads(_doctor("--json", HANDFORGE_CONFIG=str(broken), HANDFORGE_MANO_DIR="").stdout)
    assert report["hand_models"]["mano"]["hint"] == f"fix or remove {broken}", report["hand_models"]["mano"]
    serve = subprocess.run([sys.executable, "-m", "handforge", "serve", "--port", "0"], capture_output=True, text=True,
                           timeout=100, env={**os.environ, "HANDFORGE_CONFIG": str(broken)})
    assert serve.returncode == 2 and "cannot read the HandForge config file" in serve.stderr
    assert "Traceback" not in serve.stderr
    typo = tmp_path / "typo.toml"
    typo.write_text('[mano]\nmodeldir = "/x"\n[nosuch]\nkey = 1\n')
    done = _doctor("--json", HANDFORGE_CONFIG=str(typo))
    assert done.returncode == 0  # (serve only warns: the key may be an --engine-package's)
    report = json.loads(done.stdout)
    assert report["config_file"]["problem"].startswith("names settings no built-in engine declares: mano.modeldir, "
                                                       "[nosuch] (misspelled")
    assert report["config_file"]["severity"] == "warning"
    text = _doctor(HANDFORGE_CONFIG=str(typo))  # (it said PROBLEM, and exited 0)
    assert text.returncode == 0 and "  warning: names settings no built-in engine declares" in text.stdout
    assert "PROBLEM" not in text.stdout


def test_a_setting_of_the_wrong_type_fails_the_check_naming_it(tmp_path):
    # before: exit status 0 (scripts saw no fault), though every job reading the setting fails on it
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[mano]\nmodel_dir = 5\n")
    said = f"mano.model_dir from {wrong} must be a path (a string), got 5: fix or remove it"
    done = _doctor(HANDFORGE_CONFIG=str(wrong))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    settings = done.stdout.split("\nSettings (")[1]
    assert settings.count("mano.model_dir from") == 1  # said once (it was a settings row only)
    assert "PROBLEM: mano.model_dir from" in settings and "fix or remove it" in settings
    assert "evaluation.features = " in settings  # the other settings are still listed (they were not)
    done = _doctor("--json", HANDFORGE_CONFIG=str(wrong))
    report = json.loads(done.stdout)
    assert done.returncode == 1 and report["config_file"]["problem"] == said
    rows = {row["key"]: row for row in report["settings"]}
    assert rows["mano.model_dir"]["error"] == said  # (with its fix: a variable's is to unset it)
    assert rows["evaluation.features"]["source"] == "default"


def test_paths_longer_than_the_file_system_allows_are_said_shortened_without_tracebacks(tmp_path):
    """Settings whose paths have a name over 255 bytes: doctor ended in a traceback (evaluation.features, a
    setting commands load), the engines' checks logged one each (image.sd_model), and a 1 MB value was repeated
    in full in every line that named it."""
    long_name = "x" * 1_000_000
    config_file = tmp_path / "config.toml"
    config_file.write_text(f'[image]\nsd_model = "{tmp_path / long_name}"\n'
                           f'[evaluation]\nfeatures = "{tmp_path / long_name}"\n')
    done = _doctor(HANDFORGE_CONFIG=str(config_file))
    assert done.returncode == 0 and "Traceback" not in done.stdout + done.stderr, done.stderr[-2000:]
    assert len(done.stdout) + len(done.stderr) < 20_000
    settings = done.stdout.split("\nSettings (")[1]
    assert f"image.sd_model = {tmp_path}/xxx" in settings and "…(1,000,000" not in settings
    assert re.search(r"evaluation.features = \S+x…\([\d,]+ characters\)…x+ +\[from file\]", settings)
    assert "does not exist: point features under [evaluation]" in settings


def test_shown_name_keeps_short_paths_and_cuts_long_ones_in_their_middle():
    from handforge_shared.files import SHOWN_NAME_CHARS, shown_name

    assert shown_name("/a/b.toml") == "/a/b.toml" and shown_name(b"/a/\xff") == "/a/\udcff"
    name = "/data/" + "y" * 1000 + "/end.png"
    shown = shown_name(name)
    head, cut, tail = re.fullmatch(r"(.*)…\(([\d,]+) characters\)…(.*)", shown).groups()
    assert name.startswith(head) and name.endswith(tail) and len(head) + len(tail) == SHOWN_NAME_CHARS
    assert len(head) + int(cut.replace(",", "")) + len(tail) == len(name)


def test_every_setting_is_known_in_a_fresh_process_whatever_was_imported_first():
    probe = ("import json, sys; from handforge import config; keys = [s.key for s in config.settings()]; "
             "value, source = config.get('evaluation.features'); "
             "print(json.dumps([keys, source, 'handforge.evaluation.features' in sys.modules, 'torch' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr
    keys, source, features_imported, torch_imported = json.loads(done.stdout)
    # declared in light settings modules: neither the feature network nor torch was imported to know them
    assert {"evaluation.features", "image.controlnets", "image.guidance", "image.models_dir", "image.sd_config",
            "image.sd_model", "interaction.checkpoint", "mano.model_dir", "motion.checkpoint"} <= set(keys)
    assert keys == sorted(keys) and (source, features_imported, torch_imported) == ("default", False, False)


def test_the_settings_given_here_travel_as_environment_variables(tmp_path, monkeypatch):
    from handforge import config

    config_file = tmp_path / "config.toml"
    config_file.write_text('[image]\nsd_model = "/weights/sd15"\n')
    monkeypatch.setenv("HANDFORGE_CONFIG", str(config_file))
    monkeypatch.setenv("HANDFORGE_MANO_DIR", str(tmp_path / "mano"))
    for setting in config.settings():  # nothing else set here, whatever the machine's environment
        if setting.env != "HANDFORGE_MANO_DIR":
            monkeypatch.delenv(setting.env, raising=False)
    # from the file and from the environment; defaults (the shipped checkpoints) stay each process's own
    assert config.environment() == {"HANDFORGE_SD_MODEL": "/weights/sd15", "HANDFORGE_MANO_DIR": str(tmp_path / "mano")}


def test_serve_names_config_keys_no_engine_declares_once_its_engine_packages_are_loaded(tmp_path):
    from tests.support.server import running_server

    config = tmp_path / "config.toml"
    config.write_text(f'[example]\ncheckpoints = "{tmp_path}"\n[mano]\nmodeldir = "/x"\n')
    repo = Path(__file__).resolve().parents[1]
    env = {"HANDFORGE_CONFIG": str(config), "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    with running_server("--engine-package", "tests.engines", env=env) as server:
        log = server.log()
    assert "names settings no engine declares: mano.modeldir (misspelled?)" in log  # the external key is known


def test_doctor_notes_learned_models_that_are_missing_though_their_engine_runs(tmp_path):
    # before: "interaction available" and "motion available" with no word while their learned models were
    # nowhere (interaction's default engine then failed, motion's ran the spline engine)
    (tmp_path / "run").mkdir()
    env = {"HANDFORGE_INTERACTION_CHECKPOINT": str(tmp_path / "nowhere"),
           "HANDFORGE_MOTION_CHECKPOINT": str(tmp_path / "run")}
    out = _doctor(**env).stdout
    assert "interaction     available" in out and "motion          available" in out and out.count("note: ") == 2, out
    engines = json.loads(_doctor("--json", **env).stdout)["engines"]
    assert engines["interaction"]["available"] and engines["motion"]["available"]
    assert engines["interaction"]["note"].startswith(f"engine 'learned' cannot run (interaction.checkpoint: "
                                                     f"{tmp_path / 'nowhere'}: no such checkpoint folder")
    assert engines["motion"]["note"] == (f"the learned model cannot be used (motion.checkpoint: {tmp_path / 'run'}: not a "
                                         "checkpoint folder, it has no config.json): jobs asking for it run the "
                                         "spline engine")
    shipped = json.loads(_doctor("--json").stdout)["engines"]
    assert shipped["interaction"]["note"] == "" and shipped["motion"]["note"] == ""  # the shipped models are there


def test_doctor_engine_package_lists_its_engines_and_their_settings(tmp_path):
    """serve --engine-package PKG knew PKG's settings, doctor did not: it called the key in the config file a
    PROBLEM ("or an --engine-package's?") and had no way to be told the package, nor show its engine."""
    config = tmp_path / "config.toml"
    config.write_text(f'[example]\ncheckpoints = "{tmp_path}"\n')
    repo = Path(__file__).resolve().parents[1]
    env = {"HANDFORGE_CONFIG": str(config), "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    report = json.loads(_doctor("--json", "--engine-package", "tests.engines", **env).stdout)
    assert report["config_file"]["problem"] == ""
    assert report["engines"]["example"]["available"], report["engines"]["example"]
    assert "example.checkpoints" in json.dumps(report["settings"])
    missing = _doctor("--engine-package", "no_such_package_here", **env)
    assert missing.returncode == 2 and "no such Python package" in missing.stderr and "Traceback" not in missing.stderr


def test_doctor_notes_a_learned_model_of_another_frame_or_vector_size(tmp_path, monkeypatch):
    # before: the note read only the class, so "available" with no note, while every learned job refused the model
    from handforge.server.builtin_jobs import default_registry

    assets = Path(__file__).resolve().parents[1] / "backend" / "handforge" / "engines"
    for engine, shipped, size in (("motion", "motion/assets/motion_v6", "frame_dim"),
                                  ("interaction", "interaction/assets/interaction_v4", "vector_dim")):
        config = json.loads((assets / shipped / "config.json").read_text())
        shutil.copytree(assets / shipped, tmp_path / engine)  # (its weights too: the status reads their sizes)
        (tmp_path / engine / "config.json").write_text(json.dumps({**config, size: 10}))
        monkeypatch.setenv(f"HANDFORGE_{engine.upper()}_CHECKPOINT", str(tmp_path / engine))
    registry = default_registry()
    motion, interaction = (registry.engine(name).status() for name in ("motion", "interaction"))
    assert motion.available and "frame_dim 10, not the 198" in motion.note, motion.note
    assert interaction.available and "vector_dim 10, not the 64" in interaction.note, interaction.note
    from handforge.engines.interaction import model_config, representation

    assert model_config.VECTOR_DIM == representation.VECTOR_DIM  # kept literal there (light), checked here


def test_an_ihpt_target_generator_setting_that_names_no_target_generator_makes_ihpt_unavailable(tmp_path, monkeypatch):
    # before: any existing path was "available" (the run folder instead of its model/, another engine's model),
    # and every ihpt job then failed with missing weights
    from handforge.server.builtin_jobs import default_registry

    (tmp_path / "run").mkdir()
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(tmp_path))
    monkeypatch.setenv("HANDFORGE_TRANSFER_TARGET_GENERATOR", str(tmp_path / "run"))
    status = default_registry().engine("ihpt").status()
    assert not status.available and "not a checkpoint folder, it has no config.json" in status.reason, status
    assert "model/ folder of a `handforge train transfer` run" in status.hint


def test_engine_statuses_refuse_a_config_out_of_limits_in_the_loads_words_without_importing_torch(tmp_path):
    # before: motion and interaction available with no note, ihpt available, with a config.json each that every
    # job's load refused (max_frames 0, a beta_schedule no sampler has, heads that do not divide the width)
    from handforge.engines.checkpoints import CheckpointError, load_model, save_model
    from handforge.engines.interaction.model import InteractionDenoiser
    from handforge.engines.motion.model import MotionDenoiser
    from handforge.engines.transfer.model import TargetGenerator

    assets = Path(__file__).resolve().parents[1] / "backend" / "handforge" / "engines"
    shutil.copytree(assets / "motion/assets/motion_v6", tmp_path / "motion")
    shutil.copytree(assets / "interaction/assets/interaction_v4", tmp_path / "interaction")
    save_model(TargetGenerator(cross_attention_dim=16, image_size=32, backbone_channels=(8, 8), feature_dim=16,
                               num_layers=1, num_heads=2, num_queries=2, pose_tokens=2), tmp_path / "transfer")
    refused = {}
    for name, cls, key, value in (("motion", MotionDenoiser, "max_frames", 0),
                                  ("interaction", InteractionDenoiser, "beta_schedule", "cosine"),
                                  ("transfer", TargetGenerator, "num_heads", 3)):
        config = json.loads((tmp_path / name / "config.json").read_text())
        (tmp_path / name / "config.json").write_text(json.dumps({**config, key: value}))
        with pytest.raises(CheckpointError) as load:
            load_model(cls, tmp_path / name)
        refused[name] = str(load.value)
    env = {"HANDFORGE_MOTION_CHECKPOINT": str(tmp_path / "motion"),
           "HANDFORGE_INTERACTION_CHECKPOINT": str(tmp_path / "interaction"),
           "HANDFORGE_TRANSFER_TARGET_GENERATOR": str(tmp_path / "transfer"), "HANDFORGE_SD_MODEL": str(tmp_path)}
    statuses = light_statuses("from handforge.server.builtin_jobs import default_registry\n"
                              "registry = default_registry()",
                              "{name: registry.engine(name).status().to_json() for name in ('motion', 'interaction', "
                              "'ihpt')}", env)
    assert statuses["motion"]["note"] == (f"the learned model cannot be used (motion.checkpoint: {refused['motion']}): "
                                          "jobs asking for it run the spline engine"), statuses["motion"]
    assert statuses["interaction"]["note"] == (f"engine 'learned' cannot run (interaction.checkpoint: "
                                               f"{refused['interaction']}); engine 'templates' can")
    assert not statuses["ihpt"]["available"] and statuses["ihpt"]["reason"] == refused["transfer"], statuses["ihpt"]
    assert "handforge train transfer" in statuses["ihpt"]["hint"]


def test_another_program_on_the_port_is_no_usable_backend_and_fails_the_check(tmp_path):
    """A listener that is no HandForge backend (a web server on 5780): said to "require CurveZMQ keys", and
    doctor exited 0, so `handforge doctor && ...` went on."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        endpoint = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
        done = subprocess.run([sys.executable, "-m", "handforge", "doctor", "--endpoint", endpoint],
                              capture_output=True, text=True, timeout=100,
                              env={**os.environ, "HANDFORGE_CONFIG": str(tmp_path / "none.toml")})
    backend = " ".join(done.stdout.split("Backend:")[1].split())
    assert done.returncode == 1, done.stderr
    assert "NOT usable" in backend and "or what listens there is no HandForge backend" in backend


def test_doctor_json_says_which_server_is_there_or_why_none(tmp_path):
    """`doctor --json` printed "server": null whatever the state, while its text said "running at …",
    "none at …: start one with `handforge serve`" or "NOT usable: …"."""
    from tests.support.server import running_server

    env = {"HANDFORGE_CONFIG": str(tmp_path / "none.toml")}
    none = json.loads(_doctor("--json", **env).stdout)["server"]
    assert none == {"status": "none", "endpoint": "tcp://127.0.0.1:1", "reason": "no backend at tcp://127.0.0.1:1",
                    "hint": "start it with `handforge serve`"}, none
    with running_server() as server, server.client() as client:
        client.ping()  # (learns the backend's instance)
        done = subprocess.run([sys.executable, "-m", "handforge", "doctor", "--json", "--endpoint", server.endpoint],
                              capture_output=True, text=True, timeout=100, env={**os.environ, **env})
        running = json.loads(done.stdout)["server"]
        assert running["status"] == "running" and running["instance"] == client.instance == \
            json.loads(done.stdout)["backend"]["instance"], running
        assert running["name"] == "handforge" and running["endpoint"] == server.endpoint, running
    import socket

    with socket.socket() as listener:  # something that is no HandForge backend
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        endpoint = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
        unusable = json.loads(subprocess.run(
            [sys.executable, "-m", "handforge", "doctor", "--json", "--endpoint", endpoint],
            capture_output=True, text=True, timeout=100, env={**os.environ, **env}).stdout)["server"]
    assert unusable["status"] == "not_usable" and "no HandForge backend" in unusable["hint"], unusable


def test_the_export_engine_is_not_available_without_the_gl_renderer(tmp_path):
    """Every export sample's masks and labels come from the GL pass: without moderngl doctor said 'export
    available', and each export job failed once it ran."""
    pytest.importorskip("moderngl")
    from handforge.render.gl import availability

    # (availability: a context made and released on this thread left its renderer, which later tests use, drawing
    # nothing)
    reason, _ = availability()
    if reason:
        pytest.skip(reason)
    export = "\n  export          available: export_renders\n"
    assert export in _doctor().stdout
    (tmp_path / "moderngl.py").write_text('raise ImportError("simulated: moderngl is not installed")\n')
    done = _doctor(PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    assert done.returncode == 0, done.stderr  # (as for any engine that cannot run here)
    assert ("\n  export          NOT available: export_renders\n"
            "           why: the GL renderer needs moderngl, which cannot be imported\n"
            "           fix: pip install moderngl (in the backend extra)\n") in done.stdout, done.stdout


def test_a_variables_missing_path_is_fixed_in_the_variable_and_said_once(tmp_path, monkeypatch):
    """HANDFORGE_SD_MODEL naming no folder, over a file's existing one: the fix offered was 'set the environment
    variable HANDFORGE_SD_MODEL=<value>, or sd_model = "<value>" under [image] in FILE' (editing the file changes
    nothing: the variable wins), and that why/fix pair was printed for image, attentionhand, controlnet, transfer
    and ihpt, five times."""
    (tmp_path / "sd").mkdir()
    cfg = tmp_path / "sd.toml"
    cfg.write_text(f'[image]\nsd_model = "{tmp_path / "sd"}"\n')
    typo = tmp_path / "typo_sd"
    done = _doctor(HANDFORGE_CONFIG=str(cfg), HANDFORGE_SD_MODEL=str(typo))
    engines, settings = done.stdout.split("\nEngines (job kinds):\n")[1].split("\nSettings (")
    assert "under [image]" not in engines and f"in {cfg}" not in engines, engines
    assert " ".join(engines.split()).count("does not exist (see Settings below)") == 2, engines  # (its path wraps)
    assert engines.count("why: image.sd_model = ") == 2 and "fix:" not in engines, engines
    assert "point $HANDFORGE_SD_MODEL at one that exists, or unset it" in " ".join(settings.split()), settings
    # said in Settings only where an engine gives it as its reason: MANO's folder is said under Hand models, and a
    # models folder not made yet (by `models import` or `fetch`) is no problem
    done = _doctor(HANDFORGE_CONFIG=str(cfg), HANDFORGE_MANO_DIR=str(tmp_path / "no_mano"),
                   HANDFORGE_MODELS_DIR=str(tmp_path / "new_models"))
    settings = done.stdout.split("\nSettings (")[1]
    assert "does not exist" not in settings, settings
    # hello's status (the add-on's) names the source and the variable's fix
    from handforge.server.builtin_jobs import default_registry

    monkeypatch.setenv("HANDFORGE_CONFIG", str(cfg))
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(typo))
    status = default_registry().engine("image").status()
    assert status.reason == f"image.sd_model = {typo} (from $HANDFORGE_SD_MODEL) does not exist", status
    assert status.hint == "point $HANDFORGE_SD_MODEL at one that exists, or unset it", status


def test_a_feature_checkpoint_setting_that_names_nothing_is_said_under_settings(tmp_path):
    """evaluation.features naming no folder was shown as set with no word: `handforge measure` then refused to
    run. Commands, not engines, load it, so no engine's reason said it either."""
    cfg = tmp_path / "features.toml"
    cfg.write_text(f'[evaluation]\nfeatures = "{tmp_path / "nowhere"}"\n')
    settings = "".join(_doctor(HANDFORGE_CONFIG=str(cfg)).stdout.split("\nSettings (")[1].split())  # (wrapped anywhere)
    assert (f"evaluation.features={tmp_path / 'nowhere'}[fromfile]" in settings
            and f"doesnotexist:pointfeaturesunder[evaluation]in{cfg}atonethatexists" in settings), settings
    assert "doesnotexist" not in "".join(_doctor(HANDFORGE_CONFIG=str(tmp_path / "none.toml")).stdout.split())


def test_a_setting_with_a_value_says_how_to_change_it_where_the_value_came_from(tmp_path):
    """Only unset settings said how to set them: HANDFORGE_MOTION_CHECKPOINT, HANDFORGE_FEATURES and the like were
    found in the README's prose only, once they had a value (their default)."""
    cfg = tmp_path / "motion.toml"
    cfg.write_text(f'[motion]\ncheckpoint = "{tmp_path}"\n')

    def said(**env):
        settings = _doctor(**env).stdout.split("\nSettings (")[1]
        row = re.split(r"\n  (?=\S)", settings.split("motion.checkpoint = ")[1])[0]  # (up to the next setting)
        return "".join(row.split())  # (wrapped anywhere)

    assert "tochange:settheenvironmentvariableHANDFORGE_MOTION_CHECKPOINT=<value>" in said(
        HANDFORGE_CONFIG=str(tmp_path / "none.toml"))
    assert f"tochange:editcheckpointunder[motion]in{cfg}(orset$HANDFORGE_MOTION_CHECKPOINT,whichwins)" in said(
        HANDFORGE_CONFIG=str(cfg))
    assert "tochange:give$HANDFORGE_MOTION_CHECKPOINTanothervalue,orunsetit" in said(
        HANDFORGE_CONFIG=str(cfg), HANDFORGE_MOTION_CHECKPOINT=str(tmp_path))


def test_a_path_setting_declared_loaded_by_commands_is_said_missing_whatever_its_engine(monkeypatch, tmp_path):
    """Which path settings commands load was a list of keys in doctor (evaluation.features only): an outside engine's
    command-loaded path named nothing with no word. The setting declares it now."""
    from handforge import config
    from handforge.commands.doctor import _missing_paths

    ours = config.Setting(key="myengine.table", env="HANDFORGE_MYENGINE_TABLE", help="a table `myengine` reads",
                          loaded_by_commands=True)
    engines_own = config.Setting(key="myengine.weights", env="HANDFORGE_MYENGINE_WEIGHTS", help="weights")
    config.settings()  # (the shipped ones found first)
    monkeypatch.setitem(config._SETTINGS, ours.key, ours)
    monkeypatch.setitem(config._SETTINGS, engines_own.key, engines_own)
    rows = [{"key": s.key, "value": str(tmp_path / s.name), "source": "env", "help": s.help}
            for s in (ours, engines_own)]
    said = _missing_paths({"settings": rows, "engines": {}}, config)
    assert [row["key"] for row, _ in said] == ["myengine.table"], said  # no engine gives the other as its reason
    assert said[0][1] == (f"myengine.table = {tmp_path / 'table'} (from $HANDFORGE_MYENGINE_TABLE) does not exist",
                          "point $HANDFORGE_MYENGINE_TABLE at one that exists, or unset it")
