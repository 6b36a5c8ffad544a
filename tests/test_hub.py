"""Model cards, Hub-ready folders, and pushes through the REAL huggingface_hub client to a loopback Hub server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import yaml
from hub_server import LoopbackHub
from testing_utils import HUB_CONFIGS, REPO_ROOT, tiny_config

from hf_crossdistill.hub import PAPERS, load_recipe, make_model_card, push_folder_to_hub, save_for_hub
from hf_crossdistill.models.deeplab import DeepLabV3PlusConfig, DeepLabV3PlusForSemanticSegmentation


def _tiny_deeplab() -> DeepLabV3PlusForSemanticSegmentation:
    torch.manual_seed(0)
    return DeepLabV3PlusForSemanticSegmentation(tiny_config(DeepLabV3PlusConfig, "deeplabv3plus_tiny_events")).eval()


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n"), "a model card starts with YAML front matter"
    return yaml.safe_load(text.split("---\n")[1])


def test_model_card_has_model_index_and_sections(tmp_path):
    model = _tiny_deeplab()
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("student: deeplabv3plus_tiny_events\nloss_weights:\n  ag: 10.0\n")
    card = make_model_card(
        model,
        repo_id="me/student",
        method="evdistill",
        teacher="me/teacher",
        datasets=["ddd17"],
        metrics={"mean_iou": 0.58, "pixel_accuracy": np.float32(0.875)},
        recipe=recipe,
        tags=["events"],
    )
    meta = _front_matter(str(card))
    results = meta["model-index"][0]["results"][0]
    assert meta["model-index"][0]["name"] == "student"
    assert results["task"]["type"] == "image-segmentation" and results["dataset"]["name"] == "ddd17"
    assert {m["type"]: m["value"] for m in results["metrics"]} == {"mean_iou": 0.58, "pixel_accuracy": 0.875}
    assert meta["pipeline_tag"] == "image-segmentation" and meta["library_name"] == "transformers"
    assert {"evdistill", "knowledge-distillation", "events", "hf_crossdistill"} <= set(meta["tags"])
    assert "base_model" not in meta  # the teacher is not a base model: the student does not start from its weights
    text = card.text
    assert f"{sum(p.numel() for p in model.parameters()):,}" in text
    assert PAPERS["evdistill"]["code"] in text and "me/teacher" in text
    assert "ag: 10.0" in text and '.from_pretrained("me/student")' in text
    assert "| mIoU | 0.5800 |" in text
    # The card parses back through huggingface_hub into the same EvalResults.
    from huggingface_hub import ModelCard

    parsed = ModelCard(str(card))
    assert [(r.metric_type, r.metric_value) for r in parsed.data.eval_results] == [
        ("mean_iou", 0.58),
        ("pixel_accuracy", 0.875),
    ]


def test_model_card_without_metrics_and_from_a_config_dict():
    config = json.loads((HUB_CONFIGS / "models" / "resnet_tiny_events_ncaltech.json").read_text())
    card = make_model_card(config, datasets="ncaltech101")
    meta = _front_matter(str(card))
    assert "model-index" not in meta and meta["pipeline_tag"] == "image-classification"
    assert "Method" not in card.text  # trained alone: no paper section


def test_model_card_rejects_bad_input():
    model = _tiny_deeplab()
    with pytest.raises(ValueError, match="method must be one of"):
        make_model_card(model, method="fitnets")
    with pytest.raises(ValueError, match="finite"):
        make_model_card(model, datasets=["ddd17"], metrics={"mean_iou": float("nan")})
    with pytest.raises(ValueError, match="must be a number"):
        make_model_card(model, datasets=["ddd17"], metrics={"mean_iou": "high"})
    with pytest.raises(ValueError, match="eval_dataset"):
        make_model_card(model, metrics={"mean_iou": 0.5})
    with pytest.raises(TypeError, match="PreTrainedModel"):
        make_model_card(object())
    with pytest.raises(FileNotFoundError, match="recipe file"):
        load_recipe("does/not/exist.yaml")


def test_save_for_hub_writes_a_loadable_folder_with_card_and_images(tmp_path):
    from huggingface_hub import ModelCard
    from transformers import AutoModel

    model = _tiny_deeplab()
    overlay = np.zeros((4, 5, 3), dtype=np.uint8)
    folder = save_for_hub(
        model,
        tmp_path / "student",
        card_kwargs={"datasets": ["ddd17"], "metrics": {"mean_iou": 0.5}, "method": "evdistill"},
        images={"overlay": overlay},
    )
    assert {p.name for p in folder.iterdir()} >= {"config.json", "model.safetensors", "README.md", "images"}
    assert (folder / "images" / "overlay.png").is_file() and "](images/overlay.png)" in (
        folder / "README.md"
    ).read_text()
    card = ModelCard.load(folder / "README.md")
    assert card.data.eval_results[0].metric_value == 0.5
    reloaded = AutoModel.from_pretrained(folder).eval()
    inputs = torch.randn(1, 2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(inputs).logits, model(inputs).logits)
    with pytest.raises(TypeError, match="PreTrainedModel"):
        save_for_hub(torch.nn.Linear(2, 2), tmp_path / "bad")
    with pytest.raises(ValueError, match="file stems"):
        save_for_hub(model, tmp_path / "bad", images={"../x": overlay})


def test_push_folder_to_hub_validates_before_any_request(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        push_folder_to_hub(tmp_path / "missing", "me/x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        push_folder_to_hub(tmp_path / "empty", "me/x")
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="namespace/name"):
        push_folder_to_hub(tmp_path / "empty", "no-namespace")
    with pytest.raises(ValueError, match="invalid repo_id"):
        push_folder_to_hub(tmp_path / "empty", "me/bad--name..")


_CLIENT = textwrap.dedent(
    """
    import json, sys
    import torch
    sys.path.insert(0, sys.argv[1] + "/scripts")
    import push_to_hub  # the CLI, run in this process to pay the torch import once
    import hf_crossdistill.models.deeplab  # registers DeepLabV3+ with the Auto classes
    from huggingface_hub import HfApi, ModelCard, hf_hub_download
    from huggingface_hub.errors import RepositoryNotFoundError
    from transformers import AutoModel, AutoModelForImageClassification
    from hf_crossdistill.hub import push_folder_to_hub

    work = sys.argv[2]
    out = {"whoami": HfApi().whoami()["name"]}
    # 1. The CLI: rewrite the card with options, create the private repo, upload (safetensors through LFS).
    out["cli_rc"] = push_to_hub.main([
        f"{work}/deeplab", "--repo-id", "tester/tiny-deeplab", "--private", "--method", "evdistill",
        "--dataset", "ddd17", "--metric", "mean_iou=0.5", "--metric", "pixel_accuracy=0.75",
        "--teacher", "tester/teacher",
    ])
    # 2. The Python API on a second folder, pushed twice: the second push adds only the changed README.md.
    first = push_folder_to_hub(f"{work}/resnet", "tester/tiny-resnet", commit_message="first")
    with open(f"{work}/resnet/README.md", "a") as f:
        f.write("\\nmore text\\n")
    second = push_folder_to_hub(f"{work}/resnet", "tester/tiny-resnet", commit_message="second")
    out["resnet_commits"] = [first.oid, second.oid]
    # 3. Load both back from the server and compare with the outputs computed before the push.
    expected = torch.load(f"{work}/expected.pt")
    deeplab = AutoModel.from_pretrained("tester/tiny-deeplab").eval()
    resnet = AutoModelForImageClassification.from_pretrained("tester/tiny-resnet").eval()
    with torch.no_grad():
        out["deeplab_max_diff"] = float((deeplab(expected["seg_in"]).logits - expected["seg_out"]).abs().max())
        out["resnet_max_diff"] = float((resnet(expected["cls_in"]).logits - expected["cls_out"]).abs().max())
    out["deeplab_class"] = type(deeplab).__name__
    card = ModelCard.load("tester/tiny-deeplab")
    out["eval_results"] = [[r.metric_type, r.metric_value, r.dataset_name] for r in card.data.eval_results]
    out["files"] = sorted(HfApi().list_repo_files("tester/tiny-deeplab"))
    # 4. A private repo is invisible without the token.
    try:
        hf_hub_download("tester/tiny-deeplab", "config.json", token=False, cache_dir=f"{work}/anon-cache")
        out["private_hidden"] = False
    except RepositoryNotFoundError:
        out["private_hidden"] = True
    print("RESULT " + json.dumps(out))
    """
)


@pytest.mark.multiprocess
def test_push_and_load_back_through_a_loopback_hub(tmp_path):
    from hf_crossdistill.models.deeplab import build_resnet_classifier

    deeplab = _tiny_deeplab()
    save_for_hub(deeplab, tmp_path / "deeplab")
    torch.manual_seed(1)
    resnet = build_resnet_classifier(HUB_CONFIGS / "models" / "resnet_tiny_events_ncaltech.json").eval()
    save_for_hub(resnet, tmp_path / "resnet", card_kwargs={"datasets": ["ncaltech101"], "metrics": {"accuracy": 0.9}})
    seg_in, cls_in = torch.randn(1, 2, 32, 32), torch.randn(2, resnet.config.num_channels, 32, 32)
    with torch.no_grad():
        expected = {
            "seg_in": seg_in,
            "seg_out": deeplab(seg_in).logits,
            "cls_in": cls_in,
            "cls_out": resnet(cls_in).logits,
        }
    torch.save(expected, tmp_path / "expected.pt")
    (tmp_path / "client.py").write_text(_CLIENT)

    with LoopbackHub() as hub:
        env = {**os.environ, **hub.client_env(), "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(
            [sys.executable, str(tmp_path / "client.py"), str(REPO_ROOT), str(tmp_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, f"client failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        assert not hub.unhandled, f"the client used routes the loopback Hub lacks: {hub.unhandled}"
        result = json.loads(next(line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")))

        assert result["whoami"] == hub.user and result["cli_rc"] == 0
        assert result["deeplab_class"] == "DeepLabV3PlusForSemanticSegmentation"
        assert result["deeplab_max_diff"] < 1e-5 and result["resnet_max_diff"] < 1e-5
        assert result["eval_results"] == [["mean_iou", 0.5, "ddd17"], ["pixel_accuracy", 0.75, "ddd17"]]
        assert {"config.json", "model.safetensors", "README.md"} <= set(result["files"])
        assert result["private_hidden"] is True
        # What reached the server: weights through LFS (batch + PUT), the card inline, the card's YAML model-index.
        assert "model.safetensors" in hub.lfs_paths("tester/tiny-deeplab")
        assert any(method == "PUT" and path.startswith("/lfs-storage/") for method, path in hub.requests)
        stored = hub.files("tester/tiny-deeplab")
        assert stored["model.safetensors"] == (tmp_path / "deeplab" / "model.safetensors").read_bytes()
        meta = _front_matter(stored["README.md"].decode())
        assert meta["model-index"][0]["name"] == "tiny-deeplab" and "evdistill" in meta["tags"]
        # The second push of the same folder committed again, with the weights deduplicated (one LFS PUT each).
        first, second = result["resnet_commits"]
        assert first != second and hub.files("tester/tiny-resnet")["README.md"].endswith(b"more text\n")
        lfs_puts = [path for method, path in hub.requests if method == "PUT"]
        assert len(lfs_puts) == len(set(lfs_puts)) == 2


def _usage_snippet(card_text: str) -> str:
    return card_text.split("## Usage")[1].split("```python\n")[1].split("```")[0]


def test_usage_snippet_loads_the_detector_with_its_head(tmp_path):
    """A BEV detector card must not suggest AutoModel: that builds the headless base model and drops the head."""
    from hf_crossdistill.models.bev_detector import BEVDetectorConfig, BEVDetectorForObjectDetection

    torch.manual_seed(0)
    model = BEVDetectorForObjectDetection(tiny_config(BEVDetectorConfig, "bev_lidar_pillar_nuscenes_tiny")).eval()
    folder = tmp_path / "detector"
    save_for_hub(model, folder, card_kwargs={"model_name": "detector", "method": "unidistill"})
    snippet = _usage_snippet((folder / "README.md").read_text())
    assert "BEVDetectorForObjectDetection.from_pretrained" in snippet and "AutoModel" not in snippet
    namespace: dict = {}
    exec(snippet.replace("<this folder or repo>", str(folder)), namespace)  # the card's own code runs
    loaded = namespace["model"]
    assert type(loaded) is BEVDetectorForObjectDetection and hasattr(loaded, "post_process")
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, msg=lambda m, n=name: f"{n}: {m}")
