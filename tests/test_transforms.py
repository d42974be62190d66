import numpy as np
import pytest
import torch

from i3d_lightning.data.release_clip import load_input
from i3d_lightning.preprocessing import RELEASE_PREPROCESSING, to_model_range_
from i3d_lightning.video import decoding
from i3d_lightning.weights import I3DWeights
from tests.videos import write_frames


def test_model_range_is_the_release_scaling_for_pixels_and_flow():
    pixels = torch.arange(256, dtype=torch.float32)
    assert torch.equal(to_model_range_(pixels.clone(), 0.0, 255.0), pixels / 127.5 - 1.0)  # bit for bit
    flow = torch.tensor([-20.0, -10.0, 0.0, 5.0, 20.0])
    assert to_model_range_(flow.clone(), -20.0, 20.0).tolist() == [-1.0, -0.5, 0.0, 0.25, 1.0]


def test_weights_entries_carry_their_streams_preprocessing():
    assert I3DWeights.rgb_scratch.transforms is RELEASE_PREPROCESSING["rgb"]
    assert I3DWeights.flow_imagenet.transforms is RELEASE_PREPROCESSING["flow"]
    # rgb: 240x320 frames -> shorter side 256 (256x341) -> centre 224x224, pixels to [-1, 1].
    frames = torch.zeros(5, 240, 320, 3, dtype=torch.uint8)
    frames[..., 0] = 255
    clip = I3DWeights.rgb_scratch.transforms(frames)
    assert clip.shape == (3, 5, 224, 224) and clip.dtype == torch.float32
    assert torch.all(clip[0] == 1) and torch.all(clip[1:] == -1)
    # flow: vectors scale with the resize (320 -> 341 columns: x by 341/320), then clip at +-20 px and / 20.
    flow = torch.zeros(4, 240, 320, 2)
    flow[..., 0], flow[..., 1] = 9.0, -30.0
    clip = I3DWeights.flow_scratch.transforms(flow)
    assert clip.shape == (2, 4, 224, 224)
    assert clip[0].mean().item() == pytest.approx(9.0 * 341 / 320 / 20, abs=1e-6)
    assert torch.all(clip[1] == -1)


def test_a_video_input_goes_through_the_weights_preprocessing(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (30, 240, 320, 3), dtype=np.uint8)
    video = write_frames(tmp_path / "clip.mp4", frames, fps=25)


    decoded = torch.from_numpy(decoding.read_frames(video, np.arange(30)))
    expected = I3DWeights.rgb_imagenet.transforms(decoded)
    assert torch.equal(load_input(video, "rgb")[0], expected)
