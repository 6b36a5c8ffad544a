"""A guard against divergence shared by the distillation trainers: non-finite steps are skipped, never applied.

`NonFiniteGuardMixin` (use as `class MyTrainer(NonFiniteGuardMixin, TermLoggingMixin, Trainer)`, and call
`_init_nonfinite_guard()` in `__init__`):

- after the backward pass of every optimiser step, one host sync checks that the step's loss and the total
  gradient norm are finite. The gradient norm is the same on every rank (gradients are reduced before it is
  taken); the losses are per rank, so with several processes the two values are summed over ranks first (one
  small collective; NaN / inf survive a sum) and every rank takes the same decision;
- a non-finite step is skipped: the optimiser does not step (its moments and the weights stay as they were), the
  gradients are cleared as usual, and the skip is counted and logged (`nonfinite_skipped_steps`);
- after `max_consecutive_nonfinite_steps` skips in a row the run stops with a `FloatingPointError` that names the
  step and the last logged value of every loss term;
- a checkpoint or final model whose trainable weights are not all finite is never written (`FloatingPointError`).
"""

from __future__ import annotations

from typing import Any

import torch


class NonFiniteGuardMixin:
    """Skip optimiser steps whose loss or gradients are not finite; refuse to save non-finite weights."""

    def _init_nonfinite_guard(self) -> None:
        self._nonfinite_limit = self.args.max_consecutive_nonfinite_steps  # validated by the config
        self._nonfinite_consecutive = 0
        self._nonfinite_total = 0
        self._skip_optimizer_step = False
        self._last_step_loss: torch.Tensor | None = None

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        # Summed over the micro-batches of this optimiser step (gradient accumulation).
        self._last_step_loss = loss.detach() if self._last_step_loss is None else self._last_step_loss + loss.detach()
        return loss

    def _get_grad_norm(self, model, grad_norm=None):
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        loss = self._last_step_loss
        self._last_step_loss = None
        values = [torch.as_tensor(grad_norm, dtype=torch.float32).reshape(())]
        if loss is not None:
            values.append(loss.float().reshape(()).to(values[0].device))
        values = torch.stack(values)
        if self.accelerator.num_processes > 1:  # a non-finite loss on one rank must stop the step on all
            values = self.accelerator.reduce(values.to(self.args.device), reduction="sum")
        finite = bool(torch.isfinite(values).all())  # the one host sync of the guard
        if finite:
            self._nonfinite_consecutive = 0
            self._skip_optimizer_step = False
            return grad_norm
        self._nonfinite_consecutive += 1
        self._nonfinite_total += 1
        self._skip_optimizer_step = True
        if self._nonfinite_consecutive >= self._nonfinite_limit:
            terms = self._last_terms()
            raise FloatingPointError(
                f"{type(self).__name__}: the loss or the gradients were not finite for {self._nonfinite_consecutive} "
                f"consecutive steps (the last at step {self.state.global_step + 1}; {self._nonfinite_total} skipped "
                f"in all); training stopped before applying them. Last loss terms: {terms or 'none logged'}. "
                "Lower the learning rate or check the inputs (max_consecutive_nonfinite_steps sets the limit)."
            )
        return float("nan")

    def _last_terms(self) -> dict[str, float]:
        bucket = getattr(self, "_logged_terms", {}).get("train", {})
        return {name: float(values[-1]) for name, values in sorted(bucket.items()) if values}

    def create_optimizer(self, *args: Any, **kwargs: Any):
        optimizer = super().create_optimizer(*args, **kwargs)
        if not getattr(optimizer, "_nonfinite_guarded", False):
            step = optimizer.step

            def guarded_step(*step_args: Any, **step_kwargs: Any):
                if self._skip_optimizer_step:
                    self._skip_optimizer_step = False
                    return None
                return step(*step_args, **step_kwargs)

            optimizer.step = guarded_step
            optimizer._nonfinite_guarded = True
        return optimizer

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            logs["nonfinite_skipped_steps"] = self._nonfinite_total
        super().log(logs, start_time)

    def _check_finite_weights(self, module: torch.nn.Module, where: str) -> None:
        named = [(n, p) for n, p in module.named_parameters() if p.is_floating_point()]
        finite = torch.stack([torch.isfinite(p).all() for _, p in named]).tolist() if named else []  # one sync
        bad = [n for (n, _), ok in zip(named, finite) if not ok]
        if bad:
            raise FloatingPointError(
                f"{type(self).__name__}: refusing to write {where}: {len(bad)} parameter tensor(s) hold NaN/inf "
                f"(first: {bad[:3]}) at step {self.state.global_step}"
            )


NONFINITE_HELP = (
    "Optimiser steps whose loss or gradients are not finite are skipped (counted in nonfinite_skipped_steps); "
    "after this many in a row the run stops with an error naming the step and the loss terms."
)


def check_nonfinite_limit(value: Any, where: str) -> None:
    """Validate `max_consecutive_nonfinite_steps` (an int >= 1)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{where}.max_consecutive_nonfinite_steps must be an int >= 1, got {value!r}")
