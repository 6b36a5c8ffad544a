"""Per-term loss logging shared by the distillation trainers."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import torch


class TermLoggingMixin:
    """Log every loss term of `compute_loss` next to Trainer's `loss`, averaged over steps and ranks.

    Use as `class MyTrainer(TermLoggingMixin, Trainer)`; call `_init_term_logging()` in `__init__` and
    `_record_terms(terms, training=model.training)` in `compute_loss` with detached scalars. Terms are kept on
    the device (no host sync per step) and reduced with one collective when Trainer logs.
    """

    def _init_term_logging(self) -> None:
        self._logged_terms: dict[str, dict[str, list[torch.Tensor]]] = {
            "train": defaultdict(list),
            "eval": defaultdict(list),
        }

    def _record_terms(self, terms: Mapping[str, torch.Tensor], *, training: bool) -> None:
        bucket = self._logged_terms["train" if training else "eval"]
        for name, value in terms.items():
            bucket[name].append(value.detach())

    def _reduce_terms(self, split: str) -> dict[str, float]:
        """Mean of each accumulated term over the steps since the last log, then over ranks (a collective)."""
        bucket = self._logged_terms[split]
        if not bucket:
            return {}
        names = sorted(bucket)
        # One (T,) tensor for all terms: a single collective, in the same order on every rank.
        stacked = torch.stack([torch.stack(bucket[name]).float().mean() for name in names])
        stacked = self.accelerator.reduce(stacked.to(self.args.device), reduction="mean")
        bucket.clear()
        return {name: round(float(value), 6) for name, value in zip(names, stacked.tolist())}

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            logs.update(self._reduce_terms("train"))
        elif "eval_loss" in logs:
            logs.update({f"eval_{name}": value for name, value in self._reduce_terms("eval").items()})
        super().log(logs, start_time)
