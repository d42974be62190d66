"""Train I3D from a checkout: ``python train.py [dataset=...] [stream=...] [key=value ...]``; installed,
the same command is ``i3d-train`` (i3d_lightning/commands/train.py; configs/train.yaml)."""

from i3d_lightning.commands.train import main

if __name__ == "__main__":
    main()
