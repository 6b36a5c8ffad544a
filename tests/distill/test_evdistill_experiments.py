"""The experiment script's table: mean ± sample std over seeds, in %, one row per variant that ran."""

from __future__ import annotations

import argparse

from testing_utils import HUB_CONFIGS, load_script

SCRIPT = HUB_CONFIGS.parent / "scripts" / "evdistill_experiments.py"


def _module():
    return load_script(SCRIPT, "evdistill_experiments")


def test_markdown_table_aggregates_seeds():
    module = _module()
    args = argparse.Namespace(seeds=[0, 1], steps=5, teacher_steps=7, recognition_steps=9,
                              recognition_teacher_steps=11, size="48x96", quick=False)  # fmt: skip
    log = [
        {"name": "teacher_ddd17", "eval_source": {"mean_iou": 0.5}, "eval_aps": {"mean_iou": 0.25}},
        {"name": "a", "variant": "PI+AG+DA+MD", "wall_s": 10.0, "eval": {"mean_iou": 0.2, "pixel_accuracy": 0.6}},
        {"name": "b", "variant": "PI+AG+DA+MD", "wall_s": 20.0, "eval": {"mean_iou": 0.3, "pixel_accuracy": 0.8}},
        {"name": "c", "variant": "recognition", "wall_s": 1.0,
         "eval": {"accuracy": 0.5, "per_class_accuracy": [1.0, 0.0, 0.5, 0.5]}},
    ]  # fmt: skip
    table = module.markdown(log, args)
    assert (
        "| PI + AG + DA + MD = **full EvDistill** (paper: + ML, S_aps) | 25.00 ± 7.07 | 70.00 ± 14.14 | 15 |" in table
    )
    assert "pseudo labels" not in table  # variants that did not run get no row
    assert "mIoU 50.00 on held-out source images, 25.00 on the APS frames" in table
    assert "| EvDistill S_ev (no event labels) | 50.00 |" in table and "| chance | 25.00 |" in table
    assert set(module.SEGMENTATION_VARIANTS) == {
        "pseudo_labels", "events_aps_kd", "PI", "PI+AG", "PI+AG+DA", "PI+AG+DA+MD", "w/o BMR"
    }  # fmt: skip


def test_markdown_recognition_references_and_mvsec_rows():
    module = _module()
    args = argparse.Namespace(seeds=[0, 1], steps=5, teacher_steps=7, recognition_steps=9,
                              recognition_teacher_steps=11, size="48x96", quick=False)  # fmt: skip
    rec = {"accuracy": 0.2, "per_class_accuracy": [0.0] * 5}
    log = [
        {"name": "r", "variant": "recognition", "wall_s": 1.0, "eval": rec},
        {"name": "p", "variant": "recognition_previous_recipe", "wall_s": 1.0, "eval": {**rec, "accuracy": 0.1}},
        {"name": "s", "variant": "recognition_supervised_reference", "wall_s": 1.0, "eval": {**rec, "accuracy": 0.5}},
        {"name": "m0", "variant": "mvsec_evdistill", "wall_s": 4.0, "eval": {"mean_iou": 0.2, "pixel_accuracy": 0.5}},
        {"name": "m1", "variant": "mvsec_evdistill", "wall_s": 6.0, "eval": {"mean_iou": 0.4, "pixel_accuracy": 0.7}},
    ]  # fmt: skip
    table = module.markdown(log, args)
    assert "| S_ev trained with |" not in table  # no segmentation variant ran: no empty table
    assert "previous recipe" in table and "| 10.00 |" in table
    assert "supervised WITH the event labels, same network and budget | 50.00 |" in table
    assert "| full EvDistill | 30.00 ± 14.14 | 60.00 ± 14.14 | 5 |" in table
    assert "pseudo labels argmax T(x_aps) (baseline) |" not in table.split("MVSEC")[1]
    assert set(module.GROUPS) == {"segmentation", "recognition", "mvsec"}


def test_finished_runs_are_reused_only_for_the_same_recipe_and_overrides(tmp_path, monkeypatch):
    import json

    from hf_crossdistill.distill.evdistill_runner import METRICS_FILE

    module = _module()
    recipe, overrides = {"method": "evdistill", "lambda_ag": 1.0}, {"max_steps": 5, "seed": 0}
    fingerprint = module.run_fingerprint(recipe, overrides)
    assert fingerprint == module.run_fingerprint(dict(reversed(recipe.items())), overrides)  # key order ignored
    assert fingerprint != module.run_fingerprint({**recipe, "lambda_ag": 2.0}, overrides)
    assert fingerprint != module.run_fingerprint(recipe, {**overrides, "seed": 1})
    assert module._finished(tmp_path, fingerprint) is None  # nothing there
    (tmp_path / METRICS_FILE).write_text(json.dumps({"max_steps": 5, "wall_s": 1.0}))
    assert module._finished(tmp_path, fingerprint) is None  # an old run without a fingerprint
    (tmp_path / METRICS_FILE).write_text(json.dumps({"wall_s": 1.0, "fingerprint": fingerprint}))
    assert module._finished(tmp_path, fingerprint)["wall_s"] == 1.0
    monkeypatch.setattr(module, "REUSE_FINISHED_RUNS", False)  # --rerun
    assert module._finished(tmp_path, fingerprint) is None
