import pytest
import torch

from animegan.losses import BCEGANLoss, WGANGPLoss, gradient_penalty
from animegan.models import Discriminator, Generator, dcgan_init
from animegan.sampling import lerp, sample_z, slerp, to_uint8, z_from_seed


@pytest.mark.parametrize("b", [1, 7])
def test_shapes(b):
    G, D = Generator(), Discriminator()
    G.eval(), D.eval()
    x = G(torch.randn(b, 100))
    assert x.shape == (b, 3, 64, 64)
    assert x.min() >= -1 and x.max() <= 1
    assert G(torch.randn(b, 100, 1, 1)).shape == (b, 3, 64, 64)
    assert D(x).shape == (b,)
    for norm in ("layer", "none"):
        assert Discriminator(norm=norm)(x).shape == (b,)


def test_parameter_counts_match_the_report():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # 4 ConvTranspose blocks + BN and the RGB layer, all bias-free (DCGAN, 64×64, z = 100).
    assert count(Generator()) == 3_576_704
    assert count(Discriminator(norm="batch")) == 2_765_568
    # GroupNorm(1, C) has the same affine parameters as BatchNorm2d(C); "none" drops them.
    assert count(Discriminator(norm="layer")) == 2_765_568
    assert count(Discriminator(norm="none")) == 2_765_568 - 2 * (128 + 256 + 512)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in Discriminator(norm="layer").modules())


def test_dcgan_init_statistics():
    torch.manual_seed(0)
    G = Generator()
    dcgan_init(G)
    w = G.net[3].weight
    assert abs(w.mean().item()) < 1e-3 and abs(w.std().item() - 0.02) < 1e-3


class LinearCritic(torch.nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = w

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1)


@pytest.mark.parametrize("b", [1, 2, 5, 16])
def test_gradient_penalty_of_a_linear_critic(b):
    torch.manual_seed(b)
    w = torch.randn(3, 8, 8)
    critic = LinearCritic(w)
    real, fake = torch.randn(b, 3, 8, 8), torch.randn(b, 3, 8, 8)
    expected = 10 * (w.norm() - 1) ** 2  # ∇ₓ⟨w, x⟩ = w for every sample
    assert torch.allclose(gradient_penalty(critic, real, fake, lam=10), expected, rtol=1e-5)
    # A critic with ‖w‖ = 1 has zero penalty.
    assert gradient_penalty(LinearCritic(w / w.norm()), real, fake).item() < 1e-8


def test_gradient_penalty_pixel_norm_reproduces_the_report_bug():
    w = torch.randn(3, 8, 8)
    real, fake = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    per_pixel = w.norm(dim=0)  # H×W norms over channels
    expected = 10 * ((per_pixel - 1) ** 2).mean()
    got = gradient_penalty(LinearCritic(w), real, fake, norm="pixel")
    assert torch.allclose(got, expected, rtol=1e-5)
    assert not torch.allclose(got, gradient_penalty(LinearCritic(w), real, fake))


def test_gradient_penalty_flows_into_the_critic_weights():
    D = Discriminator(ndf=4, img_size=16, norm="layer")
    gp = gradient_penalty(D, torch.randn(3, 3, 16, 16), torch.randn(3, 3, 16, 16))
    gp.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in D.parameters())


def test_losses_return_stats():
    D = Discriminator(ndf=4, img_size=16)
    real, fake = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    loss, st = BCEGANLoss().d_loss(D, real, fake)
    assert set(st) == {"d_loss", "d_real", "d_fake"} and 0 < st["d_real"] < 1
    loss, st = WGANGPLoss().d_loss(Discriminator(ndf=4, img_size=16, norm="layer"), real, fake)
    assert set(st) == {"d_loss", "wasserstein", "gp"}
    assert torch.isclose(loss, -st["wasserstein"] + st["gp"])


def test_sampling_helpers():
    assert torch.equal(z_from_seed(3, 100), z_from_seed(3, 100))
    assert not torch.equal(z_from_seed(3, 100), z_from_seed(4, 100))
    assert sample_z(5, 10, 0).shape == (5, 10)
    a, b = torch.randn(100), torch.randn(100)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-5) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-5)
    assert torch.allclose(lerp(a, b, 0.5), (a + b) / 2)
    # slerp keeps the norm near the endpoints' when they have equal norms
    a2, b2 = a / a.norm() * 10, b / b.norm() * 10
    assert abs(slerp(a2, b2, 0.5).norm().item() - 10) < 1e-3
    u = to_uint8(torch.tensor([[-1.0, 0.0, 1.0]]).view(1, 1, 1, 3))
    assert u.dtype == torch.uint8 and u.flatten().tolist() == [0, 128, 255]
