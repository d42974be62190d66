"""Training: the train() run (``run``), resuming it (``resume``), its schedules, the divergence guard
and the per-epoch summary. The LightningModule and the Trainer's builders are :mod:`i3d_lightning.lightning`'s."""
