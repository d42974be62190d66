"""``python train.py ckpt_path=<run>/checkpoints/last.ckpt``: continue the run the checkpoint came from.

The run's own config is restored (composed again from the overrides Hydra saved in
``<run>/.hydra/overrides.yaml``) and the run goes on in its own folder, so its checkpoints, the best
score that ``ModelCheckpoint`` keeps, and its log carry on. What a user may change when resuming
(:data:`MAY_CHANGE`: how long to train, the hardware, the loaders' processes, logging) is applied on
top; any other override that differs from the run's own value (the stream, the dataset, the model, the
clips) contradicts the checkpoint and is refused in one line. The changes are kept with the run
(``<run>/.hydra/resumes.yaml``, one entry per resume), so a later resume continues what was running:
after ``trainer.max_epochs=4``, a plain ``python train.py ckpt_path=<run>/checkpoints/last.ckpt`` still
trains to epoch 4, and changes a later resume gives again replace the earlier ones. A checkpoint without
its run folder (copied elsewhere) resumes in the new run folder, checked against the checkpoint's own
hyper-parameters.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from hydra import compose
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from i3d_lightning.atomic_files import atomic_output
from i3d_lightning.config_checks import override_key
from i3d_lightning.errors import UserInputError
from i3d_lightning.run_folder import remove_if_only_hydra_files
from i3d_lightning.weights.loading import read_checkpoint

log = logging.getLogger(__name__)

#: Keys (and key prefixes, ending in ".") that a resumed run may change.
MAY_CHANGE = ("ckpt_path", "run_dir", "hydra.", "trainer.", "data.num_workers",
              "data.worker_timeout", "test_after_fit", "logger", "callbacks", "tf32")


def _may_change(key: str) -> bool:
    return any(key == allowed.rstrip(".") or key.startswith(allowed if allowed.endswith(".") else f"{allowed}.")
               for allowed in MAY_CHANGE)


def run_folder(checkpoint: Path) -> Path | None:
    """The run folder ``checkpoint`` was written in by ``train.py`` (``<run>/checkpoints/*.ckpt`` beside
    ``<run>/.hydra/overrides.yaml``), or ``None``."""
    run = checkpoint.resolve().parent.parent
    return run if checkpoint.resolve().parent.name == "checkpoints" and (run / ".hydra" / "overrides.yaml").is_file() \
        else None


@dataclass(frozen=True)
class Resumption:
    """A resume of the run in ``run`` from ``checkpoint``, with this command's allowed ``changes``."""

    run: Path
    checkpoint: Path
    changes: tuple[str, ...]

    def record(self) -> None:
        """Add this resume's changes to ``<run>/.hydra/resumes.yaml``: once the run is about to go on
        (a resume refused before that leaves the file as it was)."""
        entries = saved_resumes(self.run)
        entries.append({"at": datetime.now().isoformat(timespec="seconds"), "checkpoint": str(self.checkpoint),
                        "overrides": list(self.changes)})
        with atomic_output(self.run / RESUMES_FILE) as partial:
            partial.write_text(OmegaConf.to_yaml(OmegaConf.create(entries)))


#: Where a run folder keeps the allowed changes of each resume, oldest first.
RESUMES_FILE = Path(".hydra") / "resumes.yaml"


def saved_resumes(run: Path) -> list[dict]:
    """The resumes recorded in ``run`` (see :class:`Resumption`), oldest first."""
    path = run / RESUMES_FILE
    return OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else []


def _latest_by_key(overrides: list[str]) -> list[str]:
    """``overrides`` with only the last of those that set the same key (Hydra refuses a key set twice)."""
    latest = {override_key(override): override for override in overrides}
    return list(latest.values())


def resumed_config(cfg: DictConfig) -> tuple[DictConfig, Resumption | None]:
    """``cfg`` for a run that resumes from ``cfg.ckpt_path`` (see the module) and the resume to record
    once the run goes on; ``(cfg, None)`` otherwise."""
    if not cfg.ckpt_path or not HydraConfig.initialized():
        return cfg, None
    checkpoint = Path(cfg.ckpt_path).expanduser().resolve()
    run = run_folder(checkpoint)
    if run is None:
        log.warning("%s is not in a train.py run folder: resuming in %s with this command's config", checkpoint,
                    cfg.run_dir)
        return cfg, None
    original = [str(override) for override in OmegaConf.load(run / ".hydra" / "overrides.yaml")
                if override_key(str(override)) not in ("ckpt_path", "run_dir")]
    earlier = [override for entry in saved_resumes(run) for override in entry["overrides"]]
    current = [str(override) for override in HydraConfig.get().overrides.task]
    restored = compose(config_name=HydraConfig.get().job.config_name, overrides=original)
    changes = []
    for override in current:
        key = override_key(override)
        if key in ("ckpt_path", "run_dir"):  # the run's own folder is where it goes on
            continue
        if _may_change(key):
            changes.append(override)
            continue
        if _text(restored, key) != _text(cfg, key):
            raise UserInputError(
                f"ckpt_path resumes the run in {run}, which was made with "
                f"{key}={_value(restored, key)}; {override} contradicts it: leave it out to resume, or "
                f"start a new run without ckpt_path")
    in_force = _latest_by_key([*earlier, *changes])
    resumed = compose(config_name=HydraConfig.get().job.config_name,
                      overrides=[*original, *in_force, f"ckpt_path={checkpoint}", f"run_dir={run}"])
    _log_into(run / "train.log")
    remove_if_only_hydra_files(Path(HydraConfig.get().runtime.output_dir))  # this command's own, now unused
    # The run's folder holds its checkpoints: Lightning's warning that it "exists and is not empty" is
    # what resuming means, not news.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    kept = [override for override in in_force if override not in changes]
    log.info("resuming the run in %s from %s%s%s", run, checkpoint.name,
             f" with {' '.join(changes)}" if changes else "",
             f" (kept from earlier resumes: {' '.join(kept)})" if kept else "")
    return resumed, Resumption(run, checkpoint, tuple(changes))


def _text(cfg: DictConfig, key: str) -> str:
    return OmegaConf.to_yaml(OmegaConf.create({"value": OmegaConf.select(cfg, key, default=None)}))


def _value(cfg: DictConfig, key: str) -> str:
    value = OmegaConf.select(cfg, key, default=None)
    if isinstance(value, DictConfig):
        return str(value.get("name", OmegaConf.to_container(value)))
    return str(value)


def _log_into(path: Path) -> None:
    """Send the log file handlers' records to ``path`` (appended) instead of the new run folder's log."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            replacement = logging.FileHandler(path, mode="a")
            replacement.setFormatter(handler.formatter)
            replacement.setLevel(handler.level)
            root.removeHandler(handler)
            handler.close()
            root.addHandler(replacement)


def check_checkpoint_fits(checkpoint: str | Path, modalities: list[str], num_classes: int) -> None:
    """Refuse, in one line, a checkpoint whose model has other streams or classes than the data."""
    hparams = read_checkpoint(checkpoint, "ckpt_path").get("hyper_parameters", {})
    saved = (list(hparams.get("modalities", modalities)), hparams.get("num_classes", num_classes))
    if saved != (list(modalities), num_classes):
        raise UserInputError(f"ckpt_path {checkpoint} holds a {'+'.join(saved[0])} model of {saved[1]} classes; this "
                             f"run is {'+'.join(modalities)} with {num_classes} classes (set stream= and dataset= "
                             f"to match, or start a new run without ckpt_path)")
