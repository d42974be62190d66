"""Evaluate I3D from a checkout: ``python eval.py [stream=rgb|flow|joint] [key=value ...]``; installed, the
same command is ``i3d-eval`` (i3d_lightning/commands/eval.py; configs/eval.yaml)."""

from i3d_lightning.commands.eval import main

if __name__ == "__main__":
    main()
