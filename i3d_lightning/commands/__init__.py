"""The command-line tools installed as console commands (pyproject.toml [project.scripts]): each module
parses its arguments, calls the package and reports; ``python -m i3d_lightning.commands.<name>`` runs one too."""
