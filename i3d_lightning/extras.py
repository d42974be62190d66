"""The optional parts of the install (``pyproject.toml``'s extras) and the command that adds one.

An error that names a missing extra gives the command for the install at hand: ``pip install -e
'<checkout>[export]'`` where the package runs from a checkout (an editable install, as the README's
quick start makes), ``pip install 'i3d-lightning[export]'`` where it was installed from a wheel.
"""

from __future__ import annotations

from pathlib import Path

#: What each extra brings: tf (TensorFlow, to convert DeepMind's checkpoints), export (ONNX export and
#: its check), flow (OpenCV's TV-L1).
EXTRAS = ("tf", "export", "flow")


def install_command(extra: str) -> str:
    """The pip command that adds ``extra`` to this installation of the package."""
    if extra not in EXTRAS:
        raise ValueError(f"extra must be one of {EXTRAS}, got {extra!r}")
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file():
        return f"pip install -e '{checkout}[{extra}]'"
    return f"pip install 'i3d-lightning[{extra}]'"
