import pytest
import torch

from vaekit.errors import ConfigError
from vaekit.nn import build_decoder, build_encoder, default_hidden_dims


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 13, 17), (1, 5, 64)])
@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_encoder_decoder_shapes_for_any_image_size(arch, shape):
    hidden = default_hidden_dims(arch, shape)
    enc = build_encoder(arch, shape, hidden, 2 * 6)
    dec = build_decoder(arch, 6, hidden, shape)
    x = torch.rand(4, *shape)
    assert enc(x).shape == (4, 12)
    assert dec(torch.randn(4, 6)).shape == (4, *shape)


def test_mlp_on_flat_features():
    enc = build_encoder("mlp", (30,), (16,), 4)
    dec = build_decoder("mlp", 2, (16,), (30,))
    assert enc(torch.rand(3, 30)).shape == (3, 4)
    assert dec(torch.randn(3, 2)).shape == (3, 30)


def test_conv_needs_images():
    with pytest.raises(ConfigError, match="arch='mlp'"):
        build_encoder("conv", (30,), (8,), 4)


def test_unknown_arch():
    with pytest.raises(ConfigError, match="arch"):
        build_encoder("transformer", (1, 8, 8), (8,), 4)
