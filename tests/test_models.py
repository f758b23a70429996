"""The seeds' three CNNs: output shapes, layer sizes, and the pool-before-ReLU equivalence."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnsweep.models import BnCNN, LeNet, Network, build_model


@pytest.mark.parametrize("name", ["network", "bn_cnn", "lenet"])
@pytest.mark.parametrize("channels,classes,size", [(1, 10, 28), (3, 7, 32)])
def test_output_shape(name: str, channels: int, classes: int, size: int) -> None:
    model = build_model(name, in_channels=channels, num_classes=classes, image_size=size)
    assert model(torch.randn(5, channels, size, size)).shape == (5, classes)


def test_layer_sizes_match_the_seeds() -> None:
    net = Network()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    fcs = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (1, 6, (5, 5)),
        (6, 12, (5, 5)),
    ]
    assert [(f.in_features, f.out_features) for f in fcs] == [(192, 120), (120, 60), (60, 10)]
    bn = BnCNN()
    assert [m.num_features for m in bn.modules() if isinstance(m, nn.BatchNorm2d)] == [16, 32]
    assert [m.padding for m in bn.modules() if isinstance(m, nn.Conv2d)] == [(2, 2), (2, 2)]
    assert [(f.in_features, f.out_features) for f in bn.modules() if isinstance(f, nn.Linear)] == [
        (7 * 7 * 32, 10)
    ]
    le = LeNet()
    assert [c.out_channels for c in le.modules() if isinstance(c, nn.Conv2d)] == [20, 50]
    assert [(f.in_features, f.out_features) for f in le.modules() if isinstance(f, nn.Linear)] == [
        (800, 500),
        (500, 10),
    ]


def test_pool_then_relu_equals_the_seeds_relu_then_pool() -> None:
    torch.manual_seed(0)
    net = Network()
    conv1, conv2 = (m for m in net.modules() if isinstance(m, nn.Conv2d))
    x = torch.randn(4, 1, 28, 28)
    seed_order = nn.Sequential(conv1, nn.ReLU(), nn.MaxPool2d(2), conv2, nn.ReLU(), nn.MaxPool2d(2))
    torch.testing.assert_close(net.features(x), seed_order(x))


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(
        ValueError, match="unknown model 'vgg'; known models: bn_cnn, cnn, lenet, network, resnet"
    ):
        build_model("vgg")
