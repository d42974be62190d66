"""Datasets: annotation lists and their video files (``annotations``), the datasets a config names
(``dataset_configs``), clips of videos and their flow (``clip_dataset``), long videos read in segments
(``segments``), the generated synthetic set (``synthetic``), the release's sample clip (``release_clip``)
and the LightningDataModule (``datamodule``). Decoding itself is :mod:`i3d_lightning.video`'s."""
