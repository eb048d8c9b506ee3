import math

import pytest
import torch
from torch.nn import functional as F

from model.wpmd import (
    MAX_STABLE_DT,
    WPMD,
    WPMDOutput,
    conductance,
    haar_detail_adjoint,
    haar_detail_bands,
    perona_malik_step,
    wavelet_edge_magnitude,
)

# Flat regions of the step-edge patch, away from the edge (column 32) and the border.
FLAT_LEFT = (..., slice(4, 60), slice(4, 24))
FLAT_RIGHT = (..., slice(4, 60), slice(40, 60))


def noisy_step_edge(seed: int = 0) -> torch.Tensor:
    """(1, 1, 64, 64): 0 left of column 32, 1 from it on, plus Gaussian noise of sigma 0.1."""
    generator = torch.Generator().manual_seed(seed)
    clean = torch.zeros(1, 1, 64, 64)
    clean[..., 32:] = 1.0
    return clean + 0.1 * torch.randn(clean.shape, generator=generator)


def flat_variance(u: torch.Tensor) -> float:
    return 0.5 * (u[FLAT_LEFT].var() + u[FLAT_RIGHT].var()).item()


def edge_jump(u: torch.Tensor) -> float:
    """Mean difference across the edge (columns 31 -> 32): 1 for a perfectly sharp edge."""
    return (u[..., 4:60, 32] - u[..., 4:60, 31]).mean().item()


def gaussian_blur(u: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = int(math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=u.dtype)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    u = F.pad(u, (radius,) * 4, mode="reflect")
    u = F.conv2d(u, kernel.view(1, 1, 1, -1))
    return F.conv2d(u, kernel.view(1, 1, -1, 1))


def gaussian_with_variance(u: torch.Tensor, variance: float) -> torch.Tensor:
    """Gaussian blur of u whose flat-region variance matches `variance` (bisection on sigma)."""
    low, high = 0.05, 8.0
    for _ in range(30):
        sigma = 0.5 * (low + high)
        if flat_variance(gaussian_blur(u, sigma)) > variance:
            low = sigma
        else:
            high = sigma
    return gaussian_blur(u, high)


def naive_plus_step(u: torch.Tensor, k: float, dt: float) -> torch.Tensor:
    """The wrong update: plus sign, and the difference filter applied a second time (no adjoint)."""
    u_lh, u_hl = haar_detail_bands(u)
    g = conductance(u_lh, u_hl, k)
    lh_of_flux, _ = haar_detail_bands(g * u_lh)
    _, hl_of_flux = haar_detail_bands(g * u_hl)
    return u + dt * (lh_of_flux + hl_of_flux)


def test_stability_bound_of_haar_detail_bands():
    assert MAX_STABLE_DT == pytest.approx(0.5)


@pytest.mark.parametrize("size", [(8, 8), (7, 5), (2, 3), (33, 64)])
def test_adjoint_matches_forward(size):
    generator = torch.Generator().manual_seed(1)
    u = torch.randn(2, 3, *size, generator=generator, dtype=torch.float64)
    v_lh = torch.randn(u.shape, generator=generator, dtype=torch.float64)
    v_hl = torch.randn(u.shape, generator=generator, dtype=torch.float64)
    u_lh, u_hl = haar_detail_bands(u)
    lhs = (u_lh * v_lh).sum() + (u_hl * v_hl).sum()
    rhs = (u * haar_detail_adjoint(v_lh, v_hl)).sum()
    assert lhs.item() == pytest.approx(rhs.item(), rel=1e-12, abs=1e-12)


def test_bands_of_unit_step():
    u = torch.zeros(1, 1, 6, 6)
    u[..., 3:] = 1.0
    u_lh, u_hl = haar_detail_bands(u)
    assert u_hl.shape == u.shape
    assert torch.equal(u_hl[0, 0, :5, 2], torch.ones(5))
    assert u_hl.abs().sum() == 5 and u_lh.abs().sum() == 0


def test_diffusion_removes_noise_and_keeps_edge_sharper_than_gaussian():
    noisy = noisy_step_edge()
    u = noisy
    for _ in range(20):
        u = perona_malik_step(u, k=0.1, dt=0.25)
    blurred = gaussian_with_variance(noisy, flat_variance(u))

    assert flat_variance(u) < 0.05 * flat_variance(noisy)
    assert flat_variance(blurred) == pytest.approx(flat_variance(u), rel=0.02)
    assert edge_jump(u) > 0.9
    assert edge_jump(u) > 3 * edge_jump(blurred)
    # Mass is conserved (homogeneous Neumann boundary).
    assert u.mean().item() == pytest.approx(noisy.mean().item(), abs=1e-5)


def test_max_norm_never_increases_over_200_steps_at_the_bound():
    u = noisy_step_edge(seed=2)
    previous = u.abs().max().item()
    for _ in range(200):
        u = perona_malik_step(u, k=0.2, dt=MAX_STABLE_DT)
        current = u.abs().max().item()
        assert math.isfinite(current)
        assert current <= previous + 1e-6
        previous = current


@pytest.mark.parametrize("k, growth", [(0.2, 3.0), (1e3, 100.0)])
def test_naive_plus_sign_update_is_anti_diffusion(k, growth):
    u = noisy_step_edge(seed=3)
    start = u.abs().max().item()
    maxima = []
    for _ in range(200):
        u = naive_plus_step(u, k, dt=0.25)
        maxima.append(u.abs().max().item())
    assert maxima[-1] > growth * start
    assert maxima[-1] > maxima[99] > maxima[0]


def test_dt_outside_bound_is_refused():
    u = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError):
        perona_malik_step(u, 1.0, dt=0.6)
    with pytest.raises(ValueError):
        WPMD(4, dt=1.0)


def test_too_small_map_is_refused():
    with pytest.raises(ValueError):
        WPMD(2)(torch.zeros(1, 2, 1, 8))


@pytest.mark.parametrize("size", [(8, 8), (9, 7), (2, 2)])
def test_block_is_identity_at_init(size):
    torch.manual_seed(0)
    block = WPMD(6)
    x = torch.randn(2, 6, *size)
    result = block(x)
    assert isinstance(result, WPMDOutput)
    assert torch.equal(result.out, x)
    assert result.diffused.shape == x.shape and result.edge.shape == x.shape
    assert torch.isfinite(result.diffused).all() and (result.edge > 0).all()


def test_outputs_are_the_diffusion_and_its_edge_map():
    torch.manual_seed(0)
    block = WPMD(3, steps=2, init_k=0.5)
    x = torch.randn(1, 3, 10, 12)
    expected = x
    for _ in range(2):
        expected = perona_malik_step(expected, torch.full((1, 3, 1, 1), 0.5), 0.25)
    result = block(x)
    torch.testing.assert_close(result.diffused, expected)
    torch.testing.assert_close(result.edge, wavelet_edge_magnitude(expected))


def test_gradients_reach_projection_then_conductance():
    torch.manual_seed(0)
    block = WPMD(4)
    x = torch.randn(2, 4, 8, 8)
    target = torch.randn(2, 4, 8, 8)
    optimizer = torch.optim.SGD(block.parameters(), lr=0.1)

    F.mse_loss(block(x).out, target).backward()
    # With a zero projection the diffusion does not reach the output yet: k has no gradient.
    assert block.proj.weight.grad.abs().sum() > 0
    assert block.log_k.grad.abs().sum() == 0
    optimizer.step()
    assert block.proj.weight.abs().sum() > 0

    optimizer.zero_grad()
    F.mse_loss(block(x).out, target).backward()
    assert torch.isfinite(block.log_k.grad).all()
    assert block.log_k.grad.abs().sum() > 0


def test_bf16_autocast_on_cpu():
    torch.manual_seed(0)
    block = WPMD(4)
    torch.nn.init.normal_(block.proj.weight, std=0.1)
    x = torch.randn(1, 4, 9, 8)
    reference = block(x)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        result = block(x)
    assert result.diffused.dtype == torch.float32
    torch.testing.assert_close(result.diffused, reference.diffused)
    torch.testing.assert_close(result.out, reference.out, atol=0.05, rtol=0.02)

    bf16_block = block.to(torch.bfloat16)
    bf16_result = bf16_block(x.to(torch.bfloat16))
    assert bf16_result.out.dtype == torch.bfloat16
    assert torch.isfinite(bf16_result.out.float()).all()


def test_fused_step_equals_the_band_and_adjoint_formula_in_values_and_gradients():
    # perona_malik_step computes Eq. 4 in fewer passes; it must stay the textbook formula exactly.
    torch.manual_seed(3)
    u = torch.randn(2, 3, 9, 11, dtype=torch.float64, requires_grad=True)
    log_k = torch.randn(1, 3, 1, 1, dtype=torch.float64, requires_grad=True)

    def reference(u, k):
        u_lh, u_hl = haar_detail_bands(u)
        g = conductance(u_lh, u_hl, k)
        return u - 0.3 * haar_detail_adjoint(g * u_lh, g * u_hl)

    fused = perona_malik_step(u, log_k.exp(), 0.3)
    expected = reference(u, log_k.exp())
    torch.testing.assert_close(fused, expected, rtol=0, atol=1e-12)
    weights = torch.randn_like(fused)
    grads = torch.autograd.grad((fused * weights).sum(), (u, log_k))
    expected_grads = torch.autograd.grad((expected * weights).sum(), (u, log_k))
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    channels_last = u.detach().float().contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(perona_malik_step(channels_last, 1.0, 0.3), reference(channels_last, 1.0))
