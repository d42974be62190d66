"""Training: the LightningModule, its schedules, the divergence guard and the train() run."""
