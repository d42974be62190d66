"""The table of the model's parts printed when training starts, without Lightning's FLOPs column.

Lightning counts FLOPs only by running ``example_input_array`` through the model, and I3D has none (a
clip's size is the data's choice), so its summary would end with a misleading "Total FLOPs: 0".
"""

from __future__ import annotations

import logging
from typing import Any

from pytorch_lightning.callbacks import ModelSummary
from pytorch_lightning.utilities.model_summary import get_human_readable_count

log = logging.getLogger(__name__)


class ParameterSummary(ModelSummary):
    """Lightning's model summary (one row per submodule down to ``max_depth``: name, type, parameters,
    train/eval mode) and the parameter totals, logged as plain text."""

    @staticmethod
    def summarize(summary_data: list[tuple[str, list[str]]], total_parameters: int, trainable_parameters: int,
                  model_size: float, total_training_modes: dict[str, int], total_flops: int,
                  **summarize_kwargs: Any) -> None:
        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        widths = [max(len(name), *(len(value) for value in values)) for name, values in columns]
        lines = ["  ".join(name.ljust(width) for (name, _), width in zip(columns, widths, strict=True))]
        for row in zip(*(values for _, values in columns), strict=True):
            lines.append("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)))
        frozen = total_parameters - trainable_parameters
        lines.append(f"parameters: {get_human_readable_count(total_parameters)} "
                     f"({get_human_readable_count(trainable_parameters)} trainable, "
                     f"{get_human_readable_count(frozen)} non-trainable), {model_size:.1f} MB")
        log.info("model:\n%s", "\n".join(line.rstrip() for line in lines))
