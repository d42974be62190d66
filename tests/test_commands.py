"""The console commands the package installs (pyproject's ``[project.scripts]``): each name runs its
module's main(), which answers ``--help`` under that name. What each command does is tested with it
(test_fvd, test_export, test_features, test_data_tools, test_conversion), mostly through main() in
the test's own process."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

import pytest

#: Command name -> module under i3d_lightning.commands.
COMMANDS = {"i3d-fvd": "fvd", "i3d-extract-features": "extract_features", "i3d-extract-flow": "extract_flow",
            "i3d-export": "export", "i3d-convert": "convert", "i3d-check-videos": "check_videos"}


def test_each_console_command_runs_its_modules_main(capsys):
    installed = {entry.name: entry for entry in entry_points(group="console_scripts") if entry.name.startswith("i3d-")}
    assert set(installed) == set(COMMANDS)
    for name, module in COMMANDS.items():
        main = importlib.import_module(f"i3d_lightning.commands.{module}").main
        assert installed[name].load() is main
        with pytest.raises(SystemExit) as stop:
            main(["--help"])
        assert stop.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: {name} ")
