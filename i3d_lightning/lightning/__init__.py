"""The Lightning pieces that training, evaluation and export share: the LightningModule
(:mod:`~i3d_lightning.lightning.classifier`) and the builders of the Trainer and the DataModule from
their config groups (:mod:`~i3d_lightning.lightning.builders`)."""
