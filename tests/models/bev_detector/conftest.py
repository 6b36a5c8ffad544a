"""Fixtures for the BEV detector tests."""

from __future__ import annotations

import pytest
import torch
from bev_detector_helpers import make_contract_batch


@pytest.fixture
def contract_batch() -> dict[str, torch.Tensor]:
    return make_contract_batch()
