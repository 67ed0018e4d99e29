"""HandForge disabled, upgraded or reinstalled in a running Blender (real bpy): a browse of interaction candidates
ends with the rigs as they were before them, and the next enabling runs the installed code, the shared package
included."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

import build_addon
from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import ROOT, run_blender, run_with_backend

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def browse_session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    return run_with_backend("lifecycle_browse_session.py", addon_zip, tmp_path_factory.mktemp("lifecycle_browse"),
                            unset=("HANDFORGE_INTERACTION_CHECKPOINT",))


def test_disabling_while_browsing_puts_the_rigs_back(browse_session):
    # before: the candidate stayed on the right hand (1.98 off its pose in the bone matrices), and a file saved
    # then held it as the hand's pose, Cancel's copy of the artist's pose gone with the add-on
    browse_session.no_error("setup", "preferences")
    found = browse_session["preferences"]
    assert found["sampled"] == ["FINISHED"] and found["browsing"] == 3 and found["previewed"], found
    assert found["enabled_after"] is False
    assert found["right_off_its_pose"] == 0.0 and found["left_off_its_pose"] == 0.0, found


def test_a_file_saved_after_disabling_while_browsing_holds_the_pose(browse_session):
    browse_session.no_error("reopened")
    assert browse_session["reopened"]["right_off_its_pose"] == 0.0


def test_disabling_while_browsing_in_a_restricted_context_still_unregisters_and_says_so(browse_session):
    """Blender's RestrictBlend (no scene, no bpy.data: an add-on enabling or disabling another): the rigs cannot be
    reached, so the console names them; unregister itself does not fail half way."""
    browse_session.no_error("restricted")
    found = browse_session["restricted"]
    assert found["restricted_data"] is True and found["browsing"] == 3 and found["enabled_after"] is False, found
    assert "Exception in module unregister" not in browse_session.log, browse_session.log[-3000:]
    said = [line for line in browse_session.log.splitlines() if "could not be put back" in line]
    assert said and "'Hand.R'" in said[0], browse_session.log[-3000:]


PROBE = '\n\ndef upgrade_probe():  # (a test\'s upgraded build)\n    return "upgraded"\n'


def _upgraded_session(addon_zip, work, newer_version: bool):
    """The zip, then one built from a copy of the sources whose handforge_shared.poses has a new function that the
    add-on's keys.py imports (as keys.py came to import check_reach), of a newer version or not, installed over it."""
    src = work / "src"
    src.mkdir()
    for name in ("build_addon.py", "LICENSE"):  # (the zip holds the licence's text)
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "blender_addon", src / "blender_addon", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "shared", src / "shared", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    with open(src / "shared" / "handforge_shared" / "poses.py", "a") as poses:
        poses.write(PROBE)
    if newer_version:  # a new version, as a release is
        init = src / "shared" / "handforge_shared" / "__init__.py"
        version = build_addon.project_version()
        major, minor, patch = version.split(".")[:3]
        newer = f"{major}.{minor}.{int(patch) + 1}"
        init.write_text(init.read_text().replace(f'__version__ = "{version}"', f'__version__ = "{newer}"'))
    with open(src / "blender_addon" / "keys.py", "a") as keys:
        keys.write("\nfrom handforge_shared.poses import upgrade_probe  # noqa: E402,F401 - (a test's upgraded build)\n")
    upgraded = work / "upgraded.zip"
    subprocess.run([sys.executable, str(src / "build_addon.py"), "--out", str(upgraded), "--wheels-from",
                    str(ROOT / ".cache" / "wheels")], check=True, capture_output=True)
    return run_blender("lifecycle_upgrade_session.py", addon_zip, work / "blender", {"upgraded": str(upgraded)})


@pytest.fixture(scope="module")
def upgrade_session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    return _upgraded_session(addon_zip, tmp_path_factory.mktemp("lifecycle_upgrade"), newer_version=True)


def test_a_build_of_the_same_version_installed_over_runs_its_own_shared_code(addon_zip, tmp_path):  # noqa: F811
    # before: Blender unpacks an extension's wheel again only under a new name and version, and the shared wheel was
    # named by the project's version alone: a zip of the same version with other shared code (a build between
    # releases) installed over the first ran on the first one's ("cannot import name 'upgrade_probe'")
    found = _upgraded_session(addon_zip, tmp_path, newer_version=False)
    found.no_error("first", "upgraded")
    upgraded = found["upgraded"]
    assert upgraded["error"] == "" and upgraded["enabled"] and upgraded["one_copy"], upgraded
    assert upgraded["shared_probe"] == "upgraded" and upgraded["addon_probe"] == "upgraded", upgraded


def test_an_upgrade_in_a_running_blender_runs_the_new_shared_code(upgrade_session):
    # before: the new add-on met the old handforge_shared still loaded: "cannot import name 'upgrade_probe' from
    # 'handforge_shared.poses' (<the new file, which has it>)", HandForge left disabled
    upgrade_session.no_error("first", "upgraded")
    first, upgraded = upgrade_session["first"], upgrade_session["upgraded"]
    assert first["enabled"] and first["shared_probe"] is None and first["one_copy"], first
    assert upgraded["error"] == "" and upgraded["installed"] == ["FINISHED"], upgraded
    assert upgraded["enabled"] and upgraded["operators"], upgraded
    assert upgraded["shared_probe"] == "upgraded" and upgraded["addon_probe"] == "upgraded", upgraded
    assert upgraded["one_copy"] and upgraded["add_hands"] == ["FINISHED"] and upgraded["preset"] == ["FINISHED"]
    site = upgrade_session["extension_site"]
    assert first["shared_file"].startswith(site) and upgraded["shared_file"].startswith(site)


def test_disable_and_enable_leave_one_copy_of_the_shared_code(upgrade_session):
    upgrade_session.no_error("disable_enable")
    found = upgrade_session["disable_enable"]
    assert found["error"] == "" and found["enabled"] and found["one_copy"], found
    assert found["shared_probe"] == "upgraded" and found["add_hands"] == ["FINISHED"], found


def test_uninstall_then_install_runs_the_installed_shared_code(upgrade_session):
    # before: the first zip's add-on ran on the upgraded zip's handforge_shared (upgrade_probe still there)
    upgrade_session.no_error("reinstalled")
    found = upgrade_session["reinstalled"]
    assert found["error"] == "" and found["installed"] == ["FINISHED"] and found["enabled"] and found["one_copy"], found
    assert found["shared_probe"] is None and found["addon_probe"] is None, found
    assert found["add_hands"] == ["FINISHED"] and found["preset"] == ["FINISHED"], found


def test_reload_scripts_enables_handforge_again(addon_zip, tmp_path):  # noqa: F811 - fixture
    # before: Reload Scripts re-ran the add-on's __init__.py in the same package object, whose old submodules (dropped
    # from sys.modules) `from . import` took again: "HandForge: its file preferences.py failed to register (name
    # 'StringProperty' is not defined) ... reinstall HandForge", and HandForge was left disabled
    found = run_blender("lifecycle_reload_session.py", addon_zip, tmp_path)
    found.no_error("before", "reloaded")
    before, reloaded = found["before"], found["reloaded"]
    assert reloaded["enabled"] and reloaded["preset"] == "", reloaded
    assert "Exception in module register" not in found.log, found.log[-3000:]
    assert reloaded["one_copy"], reloaded
    assert reloaded["classes"] == before["classes"] and reloaded["handlers"] == before["handlers"], (before, reloaded)


def test_a_file_opened_while_handforge_is_disabled_forgets_the_last_motion(addon_zip, tmp_path):  # noqa: F811
    # before: the file's opening reached no handler of HandForge's, and once enabled again Regenerate was offered
    # there and said "the scene 'Scene' the last motion (Generate Motion) was made in is gone" with 'Scene' shown
    found = run_with_backend("lifecycle_regenerate_session.py", addon_zip, tmp_path)
    found.no_error("reopened")
    reopened = found["reopened"]
    assert reopened["made"][0] == ["FINISHED"] and reopened["can_regenerate"] is False, reopened
    assert reopened["regenerated"][0] == ["CANCELLED"] and "no motion yet: run In-between" in reopened["regenerated"][1]
