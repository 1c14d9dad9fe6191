import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture
def tiny_net_factory():
    """A small instance-norm ConvNet factory for 3 x 16 x 16 inputs (fast on a CPU)."""
    from gdrdd.models import ConvNet

    return lambda: ConvNet(channels=3, num_classes=3, resolution=16, width=8, depth=2)
