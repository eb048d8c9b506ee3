import pytest
import torch

from model.losses import (
    LOSSES,
    MASK_BCE_AREA_FLOOR,
    MASK_BCE_WEIGHT,
    dice_loss,
    edge_target,
    mask_bce,
    official_loss,
    paper_bce_loss,
    paper_loss,
    soft_iou_loss,
)


def square_target(size: int, image: int = 16, at: int = 6) -> torch.Tensor:
    mask = torch.zeros(1, 1, image, image)
    mask[..., at : at + size, at : at + size] = 1.0
    return mask


def perfect_prediction(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Saturated mask logits and exact edge probabilities for `target`."""
    return (target * 2 - 1) * 50.0, edge_target(target)


@pytest.mark.parametrize("size", [1, 2, 3])
def test_edge_target_of_tiny_targets_covers_their_border(size):
    target = square_target(size)
    edge = edge_target(target)
    assert edge.shape == target.shape
    assert set(edge.unique().tolist()) == {0.0, 1.0}
    # The band is the target's border pixels (all of them but the 3x3's centre) plus the ring
    # of pixels around the target.
    interior = square_target(1, at=7) if size == 3 else torch.zeros_like(target)
    assert torch.equal(edge[(target - interior) > 0], torch.ones(size * size - int(interior.sum())))
    assert torch.equal(edge, square_target(size + 2, at=5) - interior)


def test_edge_target_of_empty_mask_is_empty():
    assert edge_target(torch.zeros(2, 1, 8, 8)).sum() == 0


def test_edge_target_at_the_image_border_invents_no_edge():
    full = torch.ones(1, 1, 8, 8)
    assert edge_target(full).sum() == 0
    corner = torch.zeros(1, 1, 8, 8)
    corner[..., :3, :3] = 1
    edge = edge_target(corner)
    assert edge[0, 0, 0, 0] == 0  # inner pixel: its outside neighbours are not background
    assert edge[0, 0, 2, 2] == 1 and edge[0, 0, 3, 3] == 1


@pytest.mark.parametrize("name", ["paper", "official", "paper-bce"])
def test_losses_near_zero_for_perfect_and_large_for_inverted_predictions(name):
    target = torch.cat([square_target(1), square_target(3), square_target(2, at=0)])
    mask_logits, edge_probs = perfect_prediction(target)
    total, parts = LOSSES[name](mask_logits, edge_probs, target)
    assert total.item() < 1e-3
    expected_parts = {"paper": {"dice", "edge_bce"}, "official": {"soft_iou", "edge_bce"},
                      "paper-bce": {"dice", "edge_bce", "mask_bce"}}[name]
    assert set(parts) == expected_parts

    inverted_total, _ = LOSSES[name](-mask_logits, 1 - edge_probs, target)
    assert inverted_total.item() > 10.0


def test_paper_loss_weights_the_edge_term():
    target = square_target(2)
    mask_logits, _ = perfect_prediction(target)
    edge_probs = torch.full_like(target, 0.5)
    total, parts = paper_loss(mask_logits, edge_probs, target, edge_weight=10.0)
    torch.testing.assert_close(total, parts["dice"] + 10 * parts["edge_bce"])
    torch.testing.assert_close(parts["edge_bce"], torch.tensor(0.6931472))
    total, parts = official_loss(mask_logits, edge_probs, target)
    torch.testing.assert_close(total, parts["soft_iou"] + 5 * parts["edge_bce"])


@pytest.mark.parametrize("name", ["paper", "official", "paper-bce"])
def test_gradient_is_finite_for_a_one_pixel_target(name):
    target = square_target(1)
    mask_logits = torch.zeros_like(target, requires_grad=True)
    # Saturated edge probabilities: without clamping BCE's gradient would be infinite.
    edge_probs = torch.zeros_like(target)
    edge_probs[..., 0, 0] = 1.0
    edge_probs.requires_grad_(True)
    total, _ = LOSSES[name](mask_logits, edge_probs, target)
    total.backward()
    assert torch.isfinite(total)
    assert torch.isfinite(mask_logits.grad).all() and mask_logits.grad.abs().sum() > 0
    assert torch.isfinite(edge_probs.grad).all()
    # The target pixel is pushed up, the rest down.
    assert mask_logits.grad[0, 0, 6, 6] < 0 < mask_logits.grad[0, 0, 0, 0]


def test_dice_is_per_image_then_averaged():
    small, large = square_target(1), square_target(6, at=2)
    target = torch.cat([small, large])
    # Perfect on the large target, entirely missing the 1-px one.
    mask_logits = torch.cat([torch.full_like(small, -50.0), large * 100 - 50])
    per_image = [dice_loss(mask_logits[i : i + 1], target[i : i + 1]).item() for i in range(2)]
    assert dice_loss(mask_logits, target).item() == pytest.approx(sum(per_image) / 2)
    assert per_image[0] == pytest.approx(0.5, abs=1e-6)  # 1 - eps / (1 + eps) with eps = 1
    assert per_image[1] == pytest.approx(0.0, abs=1e-6)


def test_soft_iou_is_over_the_whole_batch():
    target = torch.cat([square_target(1), square_target(2)])
    mask_logits = torch.cat([torch.full_like(square_target(1), -50.0), square_target(2) * 100 - 50])
    # 4 of the 5 target pixels are found, nothing else: 1 - 4 / 5.
    assert soft_iou_loss(mask_logits, target).item() == pytest.approx(0.2, abs=1e-6)


def test_losses_are_fp32_on_bf16_inputs_and_under_autocast():
    target = torch.cat([square_target(1), square_target(3)])
    generator = torch.Generator().manual_seed(0)
    mask_logits = torch.randn(target.shape, generator=generator)
    edge_probs = 0.05 + 0.9 * torch.rand(target.shape, generator=generator)
    for name, loss in LOSSES.items():
        reference, _ = loss(mask_logits, edge_probs, target)
        bf16, _ = loss(mask_logits.bfloat16(), edge_probs.bfloat16(), target.bfloat16())
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            autocast, _ = loss(mask_logits, edge_probs, target)
        assert bf16.dtype == autocast.dtype == torch.float32, name
        torch.testing.assert_close(autocast, reference)
        torch.testing.assert_close(bf16, reference, atol=0.02, rtol=0.01)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError):
        dice_loss(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 16, 16))


def test_mask_bce_pushes_on_confident_errors_where_dice_does_not():
    target = square_target(2)
    # A confident false alarm far from the target and a deeply missed target pixel.
    mask_logits = target * 100 - 50
    mask_logits[..., 0, 0] = 12.0
    mask_logits[..., 6, 6] = -30.0
    mask_logits.requires_grad_(True)
    dice_loss(mask_logits, target).backward()
    dice_grad = mask_logits.grad.clone()
    mask_logits.grad = None
    mask_bce(mask_logits, target).backward()
    bce_grad = mask_logits.grad
    assert abs(dice_grad[0, 0, 0, 0]) < 1e-4 and abs(dice_grad[0, 0, 6, 6]) < 1e-10
    # p - t over the target area (4) + the floor
    area = 4 + MASK_BCE_AREA_FLOOR
    assert bce_grad[0, 0, 0, 0].item() == pytest.approx(1 / area, rel=1e-4)
    assert bce_grad[0, 0, 6, 6].item() == pytest.approx(-1 / area, rel=1e-4)


def test_mask_bce_is_per_image_over_its_target_area():
    small, large = square_target(1), square_target(6, at=2)
    target = torch.cat([small, large])
    mask_logits = torch.zeros_like(target)  # every pixel at p = 0.5: ln 2 each
    per_pixel = torch.log(torch.tensor(2.0)).item()
    pixels = target[0].numel()
    expected = (pixels * per_pixel / (1 + MASK_BCE_AREA_FLOOR) + pixels * per_pixel / (36 + MASK_BCE_AREA_FLOOR)) / 2
    assert mask_bce(mask_logits, target).item() == pytest.approx(expected, rel=1e-5)
    total, parts = paper_bce_loss(mask_logits, torch.full_like(target, 0.5), target)
    torch.testing.assert_close(total, parts["dice"] + 10 * parts["edge_bce"] + MASK_BCE_WEIGHT * parts["mask_bce"])
