"""`handforge self-intersection --poses` names given wrongly are said so that the fix is plain."""

from __future__ import annotations

from handforge.cli import main


def test_comma_separated_poses_are_said_to_go_space_separated(capsys):
    """"--poses fist,point" (as `measure --metrics` takes its names) said "no library pose named fist,point",
    then listed all 46 poses, fist and point among them."""
    assert main(["self-intersection", "--poses", "fist,point"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "handforge self-intersection: --poses takes the poses separated by spaces, not commas: --poses fist point"]


def test_a_comma_joined_name_that_is_not_all_poses_is_unknown(capsys):
    assert main(["self-intersection", "--poses", "fist,nosuch"]) == 2
    assert capsys.readouterr().err.startswith("handforge self-intersection: no library pose named fist,nosuch; ")
