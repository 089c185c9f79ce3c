import pytest
import torch
import torch.nn.functional as F
from _tiny import tiny_cfg
from torch import nn

from model.config import UNetConfig
from model.errors import ConfigError
from model.unet import Attention, UNet, gamma_embedding, group_norm_act, unzero


@pytest.mark.parametrize(
    "mults, attn, size, blocks",
    [([1, 2, 2], [16, 8], 32, 2), ([1], [], 16, 1), ([1, 2, 2, 2], [8], 64, 1), ([1, 2], [16], 16, 2)],
)
def test_output_shape(mults, attn, size, blocks):
    net = unzero(UNet(tiny_cfg(channel_mults=mults, attn_resolutions=attn, num_res_blocks=blocks), size))
    out = net(torch.randn(2, 6, size, size), torch.rand(2))
    assert out.shape == (2, 3, size, size)
    assert torch.isfinite(out).all()


def test_attention_at_listed_resolutions_only():
    # [1, 2, 2] at 32: encoder 2 blocks at 16 + 2 at 8, middle 1, decoder 3 at 8 + 3 at 16, none at 32.
    net = UNet(UNetConfig(), 32)
    assert sum(isinstance(m, Attention) for m in net.modules()) == 11
    net = UNet(UNetConfig(attn_resolutions=[]), 32)
    assert sum(isinstance(m, Attention) for m in net.modules()) == 1  # the middle block always has one


def test_heads_from_head_channels():
    assert Attention(64, 32, 8).heads == 2
    assert Attention(16, 32, 8).heads == 1
    assert Attention(80, 32, 8).heads == 2  # 80 // 32 = 2 heads of 40


def test_zero_init_predicts_zero():
    net = UNet(tiny_cfg(), 16)
    out = net(torch.randn(3, 6, 16, 16), torch.rand(3))
    assert torch.equal(out, torch.zeros_like(out))


def test_parameter_count():
    net = UNet(UNetConfig(), 32)
    assert net.num_parameters() == sum(p.numel() for p in net.parameters())
    assert net.num_parameters() == 7_282_435  # the default architecture; checkpoints depend on it


def test_depends_on_gamma_and_input():
    net = unzero(UNet(tiny_cfg(), 16)).eval()
    x = torch.randn(1, 6, 16, 16)
    out = net(x, torch.tensor([0.5]))
    assert not torch.allclose(out, net(x, torch.tensor([0.501])), atol=1e-4)
    assert not torch.allclose(out, net(x + 0.1, torch.tensor([0.5])), atol=1e-4)


def test_gamma_embedding_resolves_nearby_levels():
    emb = gamma_embedding(torch.tensor([0.500, 0.501]), 64)
    assert emb.shape == (2, 64)
    assert (emb[0] - emb[1]).norm() > 0.1


@pytest.mark.parametrize("attn", [[16], [8]])
def test_channels_last_same_output(attn):
    nchw = unzero(UNet(tiny_cfg(channels_last=False, attn_resolutions=attn), 16)).eval()
    nhwc = UNet(tiny_cfg(channels_last=True, attn_resolutions=attn), 16).eval()
    nhwc.load_state_dict(nchw.state_dict())
    x, gamma = torch.randn(2, 6, 16, 16), torch.rand(2)
    out = nchw(x, gamma)
    assert out.abs().mean() > 1e-3
    torch.testing.assert_close(nhwc(x, gamma), out, atol=1e-5, rtol=1e-4)


def test_dropout_only_in_training():
    net = unzero(UNet(tiny_cfg(dropout=0.5), 16))
    x, gamma = torch.randn(1, 6, 16, 16), torch.rand(1)
    assert not torch.equal(net(x, gamma), net(x, gamma))
    net.eval()
    assert torch.equal(net(x, gamma), net(x, gamma))


def test_bf16_autocast_close_to_fp32():
    net = unzero(UNet(tiny_cfg(), 16)).eval()
    x, gamma = torch.randn(2, 6, 16, 16), torch.rand(2)
    out = net(x, gamma)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = net(x, gamma)
    assert low.shape == out.shape
    assert ((low.float() - out).norm() / out.norm()) < 0.05


def test_image_size_must_divide():
    with pytest.raises(ConfigError, match="divisible"):
        UNet(tiny_cfg(channel_mults=[1, 2, 2]), 18)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_attention_matches_plain_einsum(memory_format):
    torch.manual_seed(0)
    attn = Attention(32, 8, 8)  # 4 heads of 8
    attn.proj.reset_parameters()
    x = torch.randn(2, 32, 4, 6)
    qkv = attn.qkv(attn.norm(x)).reshape(2, 3, 4, 8, 24)  # [B, q/k/v, heads, head_dim, HW]
    q, k, v = qkv.unbind(1)
    weights = torch.softmax(torch.einsum("bhdi,bhdj->bhij", q, k) / 8**0.5, dim=-1)
    expected = x + attn.proj(torch.einsum("bhij,bhdj->bhdi", weights, v).reshape(2, 32, 4, 6))
    out = attn(x.contiguous(memory_format=memory_format))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("scale_shift, act", [(False, True), (True, True), (False, False)])
def test_fused_group_norm_matches_modules(scale_shift, act):
    """The fused channels_last CPU path (unet.group_norm_act) = GroupNorm, scale-shift, SiLU: values and grads."""
    torch.manual_seed(0)
    norm = nn.GroupNorm(8, 32)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = (torch.randn(3, 32, 8, 8) * 3 + 1).requires_grad_()
    scale = torch.randn(3, 32, requires_grad=True) if scale_shift else None
    shift = torch.randn(3, 32, requires_grad=True) if scale_shift else None
    ref = norm(x)
    if scale_shift:
        ref = ref * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
    ref = F.silu(ref) if act else ref
    xc = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    out = group_norm_act(xc, norm, scale, shift, act)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    inputs = [norm.weight, norm.bias] + ([scale, shift] if scale_shift else [])
    grad = torch.randn_like(ref)
    expected = torch.autograd.grad(ref, [x, *inputs], grad)
    got = torch.autograd.grad(out, [xc, *inputs], grad.contiguous(memory_format=torch.channels_last))
    for e, g in zip(expected, got, strict=True):
        torch.testing.assert_close(g, e, atol=1e-4, rtol=1e-4)
    with torch.no_grad():  # the no-autograd path used in sampling
        torch.testing.assert_close(group_norm_act(xc, norm, scale, shift, act), ref, atol=1e-5, rtol=1e-5)


def test_channels_last_auto_is_the_cpus_format_and_place_converts_weights():
    from model.unet import use_channels_last

    assert use_channels_last("auto", "cpu") and not use_channels_last("auto", "cuda")
    assert use_channels_last(True, "cuda") and not use_channels_last(False, "cpu")
    net = UNet(tiny_cfg(), 16)
    conv = net.out[2].weight
    assert net.channels_last and conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    nchw = UNet(tiny_cfg(channels_last=False), 16).place("cpu")
    assert not nchw.channels_last and nchw.out[2].weight.is_contiguous()
    nchw.load_state_dict(net.state_dict())
    x, g = torch.randn(2, 6, 16, 16), torch.rand(2)
    torch.testing.assert_close(nchw(x, g), net(x, g), rtol=1e-4, atol=1e-5)  # same maths in either format
