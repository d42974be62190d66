"""The console commands the package installs (pyproject's ``[project.scripts]``): each name runs its
module's main(), which answers ``--help`` under that name. What each command does is tested with it
(test_fvd, test_export, test_features, test_data_tools, test_conversion), mostly through main() in
the test's own process."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from i3d_lightning.hardware import available_cpus

#: Command name -> module under i3d_lightning.commands (argparse commands).
COMMANDS = {"i3d-fvd": "fvd", "i3d-extract-features": "extract_features", "i3d-extract-flow": "extract_flow",
            "i3d-export": "export", "i3d-convert": "convert", "i3d-check-videos": "check_videos"}
#: ... and the Hydra applications of train.py and eval.py.
HYDRA_COMMANDS = {"i3d-train": "train", "i3d-eval": "eval"}


def test_each_console_command_runs_its_modules_main(capsys):
    installed = {entry.name: entry for entry in entry_points(group="console_scripts") if entry.name.startswith("i3d-")}
    assert set(installed) == set(COMMANDS) | set(HYDRA_COMMANDS)
    for name, module in COMMANDS.items():
        main = importlib.import_module(f"i3d_lightning.commands.{module}").main
        assert installed[name].load() is main
        with pytest.raises(SystemExit) as stop:
            main(["--help"])
        assert stop.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: {name} ")


@pytest.mark.parametrize(("name", "module"), HYDRA_COMMANDS.items())
def test_i3d_train_and_i3d_eval_are_the_scripts_hydra_applications(name, module):
    installed = {entry.name: entry for entry in entry_points(group="console_scripts")}
    main = importlib.import_module(f"i3d_lightning.commands.{module}").main
    assert installed[name].load() is main
    script = importlib.import_module(module)  # train.py / eval.py at the checkout's root: the same main
    assert script.main is main
    result = subprocess.run([str(Path(sys.executable).parent / name), "--help"], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0 and result.stdout.startswith(f"{module} is powered by Hydra.")


#: Command -> the libraries its start (its module: what --help, --cfg job and a refused argument need) must not
#: import. Lightning takes about 4 s on 2 cores: not for the commands that never run its loops, nor for the
#: Hydra applications, which import it once the config is composed, nor for i3d-fvd and i3d-extract-features,
#: which import it when their predict loop starts. i3d-check-videos decodes with decord and lists failures
#: from one process: not torch either (~2 s).
NOT_IMPORTED_AT_START = {"check_videos": ("pytorch_lightning", "lightning", "torch"),
                         "extract_flow": ("pytorch_lightning", "lightning"),
                         "convert": ("pytorch_lightning", "lightning"),
                         "fvd": ("pytorch_lightning", "lightning"),
                         "extract_features": ("pytorch_lightning", "lightning"),
                         "train": ("pytorch_lightning", "lightning"), "eval": ("pytorch_lightning", "lightning")}


@pytest.mark.parametrize(("module", "libraries"), NOT_IMPORTED_AT_START.items())
def test_commands_start_without_the_libraries_they_do_not_use(module, libraries):
    # A fresh process: this one has them imported by other tests.
    probe = (f"import sys, i3d_lightning.commands.{module}; "
             f"print(sorted(name for name in sys.modules if name.split('.')[0] in {libraries!r}))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr[-2000:]


@pytest.mark.parametrize(("module", "arguments", "message"), [
    ("fvd", ["{missing}", "{tmp}"], "{missing}: no such folder, .npy/.npz array or statistics file"),
    ("fvd", ["{tmp}", "{missing}"], "{missing}: no such folder, .npy/.npz array or statistics file"),
    ("extract_features", ["{missing}", "{tmp}/out"],
     "{missing}: no such folder, video or list (or give --dataset NAME)"),
])
def test_a_missing_input_is_refused_before_the_run_imports_lightning(tmp_path, module, arguments, message):
    # A mistyped path is one line and exit 2 at once (~2 s), not after the ~5 s of the predict loop's imports.
    missing = tmp_path / "no_such_videos"
    arguments = [argument.format(missing=missing, tmp=tmp_path) for argument in arguments]
    probe = (f"import sys\nfrom i3d_lightning.commands import {module}\nstatus = {module}.main({arguments!r})\n"
             "print(status, 'pytorch_lightning' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert result.stdout.split() == ["2", "False"], result.stdout + result.stderr[-2000:]
    assert result.stderr.strip() == f"error: {message.format(missing=missing)}"


def _option_help(command: str, capsys) -> dict[str, str]:
    """``--option ...`` -> its help text, from ``<command> --help``."""
    with pytest.raises(SystemExit):
        importlib.import_module(f"i3d_lightning.commands.{command}").main(["--help"])
    options, current = {}, None
    for line in capsys.readouterr().out.splitlines():
        words = line.split()
        if words and words[0].startswith("--"):
            current = words[0].rstrip(",")
            options[current] = " ".join(words[1:])
        elif current and words and line.startswith(" " * 10):
            options[current] += " " + " ".join(words)
    return options


def test_fvd_and_features_take_the_same_inference_options(capsys):
    # Written once (cli.add_inference_arguments): the same names, defaults and words, but for what a network
    # call takes (clips or windows); the same InferenceOptions with the same defaults (decoding workers: one per
    # core, at most 2, for files; none for an array in memory).
    from i3d_lightning.cli import inference_options
    from i3d_lightning.runtime.video_inference import InferenceOptions

    fvd, features = _option_help("fvd", capsys), _option_help("extract_features", capsys)
    shared = ("--precision", "--batch-size", "--no-fast", "--accelerator", "--devices", "--workers")
    assert {option: fvd[option].replace("clips", "windows") for option in shared} == \
        {option: features[option] for option in shared}
    defaults = argparse.Namespace(precision="32", batch_size=None, no_fast=False, accelerator="auto", devices="auto",
                                  workers=None)
    assert inference_options(defaults) == InferenceOptions()
    assert (InferenceOptions().workers_for(decodes_files=False), InferenceOptions(workers=3).workers_for(
        decodes_files=False)) == (0, 3)
    assert InferenceOptions().workers_for(decodes_files=True) == min(2, available_cpus())
