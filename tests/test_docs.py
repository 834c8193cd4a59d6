"""The user's guide names every option the commands take: a new option is documented with it."""
import re
from pathlib import Path

import pytest

from benchmarks import explore, run, score

USAGE = (Path(__file__).parents[1] / "docs" / "usage.md").read_text()


@pytest.mark.parametrize("command", [run, score, explore])
def test_every_option_of_a_command_is_in_the_users_guide(command, capsys):
    with pytest.raises(SystemExit):
        command.parse_args(["--help"])
    options = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", capsys.readouterr().out)) - {"--help"}
    assert options, "no options read from --help"
    assert sorted(o for o in options if not re.search(rf"(?<![\w-]){o}(?![\w-])", USAGE)) == []
