"""Process-group teardown: the exit hook and the end-of-script shutdown leave no group behind."""

from __future__ import annotations

import atexit
import socket

import pytest
import torch.distributed as dist

from hf_crossdistill.distill import _distributed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def one_process_world():
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def test_helpers_are_no_ops_without_a_world():
    assert not dist.is_initialized()
    _distributed.shutdown_distributed()
    _distributed._destroy_if_initialized()
    assert not dist.is_initialized()


@pytest.mark.parametrize("teardown", ["shutdown_distributed", "_destroy_if_initialized"])
def test_teardown_destroys_the_default_group(one_process_world, teardown):
    assert dist.is_initialized()
    getattr(_distributed, teardown)()
    assert not dist.is_initialized()


def test_exit_hook_is_registered_once(monkeypatch):
    registered = []
    monkeypatch.setattr(_distributed, "_AT_EXIT_REGISTERED", False)
    monkeypatch.setattr(atexit, "register", registered.append)
    _distributed.destroy_process_group_at_exit()
    _distributed.destroy_process_group_at_exit()
    assert registered == [_distributed._destroy_if_initialized]
