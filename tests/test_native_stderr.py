import os
import threading

import pytest

from i3d_lightning.native_stderr import native_stderr_captured


def test_native_lines_are_held_back_unless_shown(capfd):
    with native_stderr_captured():
        os.write(2, b"native chatter\n")
    assert capfd.readouterr().err == ""
    os.write(2, b"after\n")  # descriptor 2 is back where it was
    assert capfd.readouterr().err == "after\n"


def test_shown_lines_are_replayed_without_the_omitted_ones(capfd):
    with native_stderr_captured() as captured:
        captured.show, captured.omit = True, "/videos/a.mp4"
        os.write(2, b"ERROR opening: /videos/a.mp4, Invalid data\nanother thread's warning\n")
    assert capfd.readouterr().err == "another thread's warning\n"


def test_an_exception_in_the_block_still_restores_descriptor_2(capfd):
    with pytest.raises(RuntimeError), native_stderr_captured() as captured:
        captured.show = True
        os.write(2, b"why it failed\n")
        raise RuntimeError
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "why it failed\nafter\n"


def test_captures_nest_without_waiting_on_each_other(capfd):
    # Converting a checkpoint captures around the TensorFlow import, which captures too.
    def nested() -> None:
        with native_stderr_captured() as outer:
            outer.show = True
            with native_stderr_captured() as inner:
                inner.show = True
                os.write(2, b"inner\n")
            os.write(2, b"outer\n")

    worker = threading.Thread(target=nested, daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "nested captures deadlocked"
    assert capfd.readouterr().err == "inner\nouter\n"
