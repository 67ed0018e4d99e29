"""The config file as a user writes it: relative paths, values of the wrong type, a section written
as a value. Each is read as meant or refused with what to write instead; nothing is read silently wrong."""

from __future__ import annotations

import pytest
from handforge import config


@pytest.fixture
def config_file(tmp_path, monkeypatch):
    folder = tmp_path / "settings"
    folder.mkdir()
    path = folder / "config.toml"
    monkeypatch.setenv("HANDFORGE_CONFIG", str(path))
    monkeypatch.delenv("HANDFORGE_MANO_DIR", raising=False)
    monkeypatch.delenv("HANDFORGE_MOTION_CHECKPOINT", raising=False)
    return path


def test_relative_paths_in_the_file_are_taken_from_the_files_folder(config_file, tmp_path, monkeypatch):
    # before: "mano" was looked for in whatever folder the command ran from (a backend Blender starts
    # runs in Blender's folder): the same file worked from one place and not from another
    config_file.write_text('[mano]\nmodel_dir = "mano"\n[motion]\ncheckpoint = "~/runs/m"\n')
    monkeypatch.chdir(tmp_path)
    assert config.get("mano.model_dir") == (config_file.parent / "mano", "file")
    assert config.value("motion.checkpoint") == config.Path("~/runs/m").expanduser()
    monkeypatch.setenv("HANDFORGE_MANO_DIR", "here")  # the environment's stay as given
    assert config.value("mano.model_dir") == config.Path("here")
    assert config.environment()["HANDFORGE_MOTION_CHECKPOINT"] == str(config.Path("~/runs/m").expanduser())


@pytest.mark.parametrize("text, shown", [
    ('[image]\nsd_model = ["/models/sd15"]\n', "image.sd_model from .* must be a path \\(a string\\), got \\['/models"),
    ('[motion]\ncheckpoint = true\n', "motion.checkpoint from .* must be a path \\(a string\\), got True"),
    ('[mano]\nmodel_dir = 5\n', "mano.model_dir from .* must be a path \\(a string\\), got 5"),
])
def test_values_of_the_wrong_type_are_refused_not_read_as_their_text(config_file, text, shown):
    # before: ["/models/sd15"] became the path "['/models/sd15']" and true the path "True"
    config_file.write_text(text)
    key = shown.split(" from")[0]
    with pytest.raises(config.ConfigError, match=shown):
        config.value(key)


def test_a_section_written_as_a_value_is_said(config_file):
    # before: `mano = "/data/mano"` (for [mano] model_dir = ...) was ignored without a word
    config_file.write_text('mano = "/data/mano/models"\n')
    with pytest.raises(config.ConfigError, match=r"mano must be a \[mano\] table, got str '/data/mano/models', "
                                                  r"so nothing in it is read: write it as\n    \[mano\]\n    model_dir = \"<value>\""):
        config.check_file()


def test_a_config_path_that_is_a_folder_is_said(tmp_path, monkeypatch):
    # before: doctor said the file was "not created yet" and every setting read as unset
    monkeypatch.setenv("HANDFORGE_CONFIG", str(tmp_path))
    with pytest.raises(config.ConfigError, match="is a folder: point HANDFORGE_CONFIG at a .toml file") as raised:
        config.check_file()
    # its fix is its own: doctor and hello had added "; fix or remove it" (the folder)
    assert config.refusal(raised.value) == str(raised.value) and "remove" not in str(raised.value)
    monkeypatch.setenv("HANDFORGE_CONFIG", "~nosuchuser/c.toml")
    with pytest.raises(config.ConfigError) as raised:
        config.check_file()
    assert config.refusal(raised.value).endswith("no home folder for ~nosuchuser: give the config file's full path")


@pytest.mark.parametrize("command", [["models", "list"], ["compare-hands"]])
def test_every_command_says_an_unreadable_config_file_in_one_line(config_file, command, capsys):
    """Whichever setting a command reads first, a broken file ends it with one line and status 2."""
    from handforge.cli import main

    config_file.write_text('[mano]\nmodel_dir = "unclosed\n')
    assert main(command) == 2
    err = capsys.readouterr().err
    assert str(config_file) in err and "fix or remove it" in err and "Traceback" not in err


@pytest.mark.parametrize("command", [["corpus", "--out", "corpus", "--sequences", "1"], ["serve", "--port", "0"]])
def test_every_command_refuses_a_setting_of_the_wrong_kind_before_any_work(config_file, command, tmp_path,
                                                                           monkeypatch, capsys):
    """`model_dir = 3` failed `doctor`, while serve started (every MANO job would fail on it) and corpus
    wrote its clips: the README says every command refuses, before any work."""
    from handforge.cli import main

    monkeypatch.chdir(tmp_path)
    config_file.write_text("[mano]\nmodel_dir = 3\n")
    assert main(command) == 2
    assert capsys.readouterr().err == (f"handforge {command[0]}: mano.model_dir from {config_file} must be a path "
                                       "(a string), got 3: fix or remove it\n")
    assert not (tmp_path / "corpus").exists()


def test_a_file_saved_with_a_byte_order_mark_is_read_and_one_not_utf8_is_said(config_file):
    # before: Notepad's UTF-8 (a BOM) was "Invalid statement (at line 1, column 1)", and a Latin-1 é a
    # UnicodeDecodeError traceback from every command
    config_file.write_bytes('\ufeff[mano]\nmodel_dir = "/data/mano"\n'.encode())
    assert config.value("mano.model_dir") == config.Path("/data/mano")
    config_file.write_bytes('[mano]\nmodel_dir = "/data/café"\n'.encode("latin-1"))
    with pytest.raises(config.ConfigError, match=r"config.toml is not UTF-8 text \(invalid .* at byte 29\): save it as "
                                                 "UTF-8"):
        config.check_file()


@pytest.mark.parametrize("text, shown", [
    ('[motion]\ncheckpoint = ""\n', "motion.checkpoint from .* is empty: give a path, or remove the line"),
    # (it is a string: "must be a path (a string)" named the wrong problem)
    ('[mano]\nmodel_dir = "~nobody-here/mano"\n', "mano.model_dir from .* is '~nobody-here/mano', but there is no home "
                                                  "folder for ~nobody-here: give the full path$"),
])
def test_an_empty_path_or_an_unknown_users_home_is_refused(config_file, text, shown):
    # before: "" was the config file's own folder (so motion.checkpoint seemed set, to a folder that is no
    # checkpoint), and ~user of no such user a RuntimeError traceback ("Could not determine home directory")
    config_file.write_text(text)
    with pytest.raises(config.ConfigError, match=shown):
        config.value(shown.split(" from")[0])


def test_an_empty_environment_variable_counts_as_unset(config_file, monkeypatch):
    # README: an empty path in the file is refused, `HANDFORGE_MANO_DIR= handforge ...` leaves the file's value
    config_file.write_text('[mano]\nmodel_dir = "mano"\n')
    monkeypatch.setenv("HANDFORGE_MANO_DIR", "")
    assert config.get("mano.model_dir") == (config_file.parent / "mano", "file")
    config_file.write_text("")
    assert config.get("mano.model_dir") == (None, "unset")


def test_every_command_reads_the_file_first_naming_a_misspelled_key(config_file, tmp_path, capsys):
    """Only serve and doctor checked the file: eval, train and demo ignored a misspelled key without a word
    (eval interaction evaluated the shipped model), and demo said a file that does not parse once it had
    written half its folder."""
    from handforge.cli import main

    config_file.write_text('[interaction]\ncheckpont = "runA/model"\n')
    assert main(["self-intersection", "--poses", "flat"]) == 0
    err = capsys.readouterr().err
    assert f"warning: the config file {config_file} names settings no engine declares, which nothing reads: " \
           "interaction.checkpont (misspelled?" in err, err
    out = tmp_path / "demo"
    for text, words in (("[image\n", "cannot read the HandForge config file"),
                        ('interaction = "runA/model"\n', "interaction must be a [interaction] table")):
        config_file.write_text(text)
        assert main(["demo", "--out", str(out), "--no-blender"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("handforge demo: ") and words in err and "Traceback" not in err, err
        assert not out.exists()


@pytest.mark.parametrize("path", ["C:\\Users\\ana\\mano", "C:\\mano", "C:\\temp\\new"])
def test_a_windows_path_in_double_quotes_is_said_with_how_to_write_it(config_file, path):
    # before: "Invalid hex value (at line 2, column 18)" alone, or (\t, \n being escapes) another path, unsaid
    config_file.write_text(f'[mano]\nmodel_dir = "{path}"\n')
    with pytest.raises(config.ConfigError, match="write a Windows path in single quotes"):
        config.value("mano.model_dir")
    config_file.write_text(f"[mano]\nmodel_dir = '{path}'\n")  # as the hint says: read as written
    assert str(config.value("mano.model_dir")).endswith(path)  # (relative on this OS: from the file's folder)


@pytest.mark.parametrize("xdg", ["", "relative/config"])
def test_an_empty_or_relative_xdg_config_home_is_ignored(monkeypatch, tmp_path, xdg):
    # before: "" put the config file in the current folder
    monkeypatch.delenv("HANDFORGE_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", xdg)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config.config_path() == tmp_path / ".config" / "handforge" / "config.toml"


def test_the_backslash_hint_is_given_only_where_a_backslash_can_be_the_cause(config_file, monkeypatch):
    config_file.write_text('[mano]\nmodel_dir = "/data/mano\n')  # unterminated: no backslash anywhere
    with pytest.raises(config.ConfigError) as refused:
        config.check_file()
    assert "single quotes" not in str(refused.value)
    config_file.write_text("")
    monkeypatch.setenv("HANDFORGE_MANO_DIR", "/data/mano\n")  # an environment variable has no escapes
    with pytest.raises(config.ConfigError, match="holds a control character") as refused:
        config.value("mano.model_dir")
    assert "single quotes" not in str(refused.value)


@pytest.mark.parametrize("path, shown, own_fix", [
    ("~no-such-user-here/config.toml", "HANDFORGE_CONFIG=~no-such-user-here/config.toml: there is no home folder "
                                       "for ~no-such-user-here: give the config file's full path", True),
    ("/tmp/" + "a" * 300 + ".toml", "a name in this path is longer than the file system allows", False),
])
def test_a_config_path_that_cannot_be_looked_at_is_said_in_one_line(path, shown, own_fix, monkeypatch, capsys):
    # before: a RuntimeError (no such user) or an OSError (a name over 255 bytes) traceback from every
    # command, and from doctor
    from handforge.cli import main

    monkeypatch.setenv("HANDFORGE_CONFIG", path)
    assert main(["measure", "--clips", "/no/such/clips"]) == 2
    err = capsys.readouterr().err
    assert shown in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert ("fix or remove it" in err) != own_fix, err  # (a fix of its own is not followed by "fix or remove it")
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "PROBLEM: " in out and "not created yet" not in out


def test_a_config_path_that_is_a_pipe_or_a_device_is_said(tmp_path, monkeypatch):
    # before: HANDFORGE_CONFIG=<(printf ...) (a pipe) or a device was read as no file: its settings unset, its
    # misspelled keys unsaid; /dev/null stays the way to use no config file
    import os

    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    for path, kind in ((fifo, "a FIFO"), ("/dev/zero", "a device")):
        monkeypatch.setenv("HANDFORGE_CONFIG", str(path))
        with pytest.raises(config.ConfigError, match=f"{path} is not a regular file \\({kind}\\): point "
                                                     "HANDFORGE_CONFIG at a .toml file"):
            config.check_file()
    monkeypatch.setenv("HANDFORGE_CONFIG", os.devnull)
    assert config.check_file() == []


@pytest.mark.parametrize("command", [["eval", "interaction", "--help"], ["train", "motion", "-h"]])
def test_an_engines_help_is_shown_whatever_the_config_says(config_file, command, capsys, monkeypatch):
    """`eval interaction --help` was refused with "cannot read the HandForge config file" (the engine's parser runs
    inside its run, after the file's check), as was `eval motion --help` with HANDFORGE_MANO_DIR=' ': the help that
    names the option overriding the setting (--checkpoint) could not be read until the file was fixed."""
    from handforge.cli import main

    for text, env in (('[mano]\nmodel_dir = "unclosed\n', {}), ("", {"HANDFORGE_MANO_DIR": " "})):
        config_file.write_text(text)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        with pytest.raises(SystemExit) as exit_:
            main(command)
        out, err = capsys.readouterr()
        assert exit_.value.code == 0 and f"usage: handforge {command[0]} {command[1]}" in out and not err, err


@pytest.mark.parametrize("value, said", [
    (" ", "handforge keys: mano.model_dir from $HANDFORGE_MANO_DIR is empty: give a path, or unset $HANDFORGE_MANO_DIR "
          "to leave the setting unset\n"),
    ("~nobody-here/mano", "handforge keys: mano.model_dir from $HANDFORGE_MANO_DIR is '~nobody-here/mano', but there is "
                          "no home folder for ~nobody-here: give the full path in $HANDFORGE_MANO_DIR, or unset it\n"),
    ("/data/\tmano", "handforge keys: mano.model_dir from $HANDFORGE_MANO_DIR holds a control character, '/data/\\tmano': "
                     "fix $HANDFORGE_MANO_DIR or unset it\n"),
])
def test_a_variables_bad_value_is_told_to_be_unset_not_a_line_removed(config_file, value, said, capsys, monkeypatch):
    """HANDFORGE_MANO_DIR=' ' said "remove the line to leave it unset; fix or remove it" (a variable has no line), and
    '~nosuchuser/x' "must be a path (a string)" (it is one: the home folder is what is missing)."""
    from handforge.cli import main

    monkeypatch.setenv("HANDFORGE_MANO_DIR", value)
    assert main(["keys", "--out", str(config_file.parent / "k")]) == 2
    assert capsys.readouterr().err == said


def test_a_section_written_as_a_key_ends_with_the_lines_to_write(config_file, capsys):
    # cli.py put "; fix or remove it" after the example's last line: `model_dir = "<value>"; fix or remove it`
    from handforge.cli import main

    config_file.write_text('mano = "/data/mano/models"\n')
    assert main(["keys", "--out", str(config_file.parent / "k")]) == 2
    assert capsys.readouterr().err == (f"handforge keys: {config_file}: mano must be a [mano] table, got str "
                                       "'/data/mano/models', so nothing in it is read: write it as\n    [mano]\n"
                                       '    model_dir = "<value>"\n')


@pytest.mark.parametrize("text, said", [
    # the [mano] line forgotten: it was "[model_dir] (misspelled? ...)", a table not in the file, and no misspelling
    ('model_dir = "/data/mano/models"\n', "model_dir (misspelled? `handforge doctor` lists the settings, with "
     "--engine-package PACKAGE an outside package's); model_dir is a setting of [mano]: write it below a [mano] line "
     "(a line above every [section] line is no section's)"),
    ('[mano]\nmodel_dirr = "/data/mano/models"\n', "mano.model_dirr (misspelled? `handforge doctor` lists the "
     "settings, with --engine-package PACKAGE an outside package's); mano.model_dirr: did you mean mano.model_dir?"),
    ('[mnao]\nmodel_dir = "/data/mano/models"\n', "[mnao] (misspelled? `handforge doctor` lists the settings, with "
     "--engine-package PACKAGE an outside package's); [mnao]: did you mean [mano]?"),
    # a name another section declares, not a misspelling: it was "did you mean image.models_dir?" (weights' folder)
    ('[image]\nmodel_dir = "/data/mano/models"\n', "image.model_dir (misspelled? `handforge doctor` lists the "
     "settings, with --engine-package PACKAGE an outside package's); image.model_dir: model_dir is a setting of [mano]"),
    ('"mano.model_dir" = "/data/mano/models"\n', "mano.model_dir (misspelled? `handforge doctor` lists the settings, "
     "with --engine-package PACKAGE an outside package's); mano.model_dir: \"mano.model_dir\" in quotes is one name, "
     "not model_dir of [mano]: write model_dir = … below a [mano] line"),
])
def test_a_key_without_its_section_or_misspelled_is_answered_with_the_one_meant(config_file, text, said, capsys):
    from handforge.cli import main

    config_file.write_text(text)
    assert main(["models", "list"]) == 0
    err = capsys.readouterr().err
    assert err == (f"handforge models: warning: the config file {config_file} names settings no engine declares, "
                   f"which nothing reads: {said}\n"), err


def test_a_config_path_that_cannot_be_a_file_is_said_not_read_as_not_created_yet(config_file, capsys):
    """A dangling link (a dotfiles folder moved), a link loop, and a path through a file were "not created yet",
    every command running on defaults without a word, though the last two can never be created there."""
    from handforge.cli import main

    folder = config_file.parent
    (folder / "afile").write_text("")
    config_file.symlink_to(folder / "moved" / "config.toml")
    with pytest.raises(config.ConfigError, match=rf"{config_file} is a symbolic link to {folder}/moved/config.toml, "
                                                 "which does not exist: "):
        config.check_file()
    config_file.unlink()
    config_file.symlink_to(config_file)
    with pytest.raises(config.ConfigError, match=rf"{config_file} is a symbolic link in a loop \(it never "
                                                 r"reaches a file\)"):
        config.check_file()
    config_file.unlink()
    config.os.environ["HANDFORGE_CONFIG"] = str(folder / "afile" / "config.toml")  # (monkeypatch puts it back)
    assert main(["models", "list"]) == 2
    err = capsys.readouterr().err
    assert f"{folder / 'afile'} is a file, not a folder" in err and "Traceback" not in err, err


def test_a_setting_declared_twice_or_on_anothers_variable_is_refused_with_what_to_do():
    """An engine's setting under a key another module declares was refused naming neither the other nor a fix; one
    on another setting's variable was taken, so that variable set both (an outside engine's silently)."""
    known = config.setting("motion.checkpoint")
    with pytest.raises(config.SettingClash) as same_key:
        config.register(config.Setting(key="motion.checkpoint", env="HANDFORGE_TEST_OTHER", help="mine"))
    assert str(same_key.value) == (f"setting motion.checkpoint is already declared differently ({known.help}): give "
                                   "yours a key of its own, under its engine's own section (e.g. <engine>.checkpoint)")
    with pytest.raises(config.SettingClash) as same_variable:
        config.register(config.Setting(key="wave_test.model", env=known.env, help="mine"))
    assert str(same_variable.value) == (f"setting wave_test.model: the environment variable {known.env} is "
                                        "motion.checkpoint's already: give yours one of its own "
                                        "(HANDFORGE_WAVE_TEST_MODEL)")
    assert "wave_test.model" not in {s.key for s in config.settings()}
    assert config.register(known) is known  # the same declaration again is fine (a module imported twice)


def test_a_server_warns_of_a_config_file_that_does_not_exist(tmp_path):
    """HANDFORGE_CONFIG with a typo (a file that does not exist) left every setting at its default, unsaid by `serve`
    (doctor says "not created yet"): its jobs then failed for weights the user had configured in the real file."""
    from tests.support.server import running_server

    missing = tmp_path / "confg.toml"
    with running_server(env={"HANDFORGE_CONFIG": str(missing)}) as server:  # (it answers: past the warning)
        log = server.log()
    assert f"WARNING handforge.server: HANDFORGE_CONFIG names {missing}, which does not exist: every setting is its " \
           "environment variable's or its default" in log, log
    (tmp_path / "config.toml").write_text("")
    with running_server(env={"HANDFORGE_CONFIG": str(tmp_path / "config.toml")}) as server:
        log = server.log()
    assert "listening on" in log and "HANDFORGE_CONFIG" not in log, log
