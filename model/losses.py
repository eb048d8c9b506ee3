"""Training losses: the paper's (Sec. 3.4) and the one the official code optimised.

- paper:    Dice(sigmoid(mask)) + 10 * BCE(edge, edge_target(target))
- official: 5 * BCE(edge, edge_gt) + softIoU(sigmoid(mask))
- paper-bce: the paper's loss plus a BCE on the mask logits, summed per image over its target area

Why the third: through the sigmoid, Dice's gradient on a pixel is scaled by p (1 - p), so a confidently
wrong pixel (a false-alarm blob at logit +10, a missed target at -30) gets almost none; BCE on the logits
keeps a gradient of p - t there. It is summed per image and divided by the image's target area (plus
`MASK_BCE_AREA_FLOOR`, for crops with no target), so it weighs about as much as the per-image Dice.

Reading of the official training script (IPIC-Lab/IRSAM, `train_IRSAM.py` in git history): its
"BCE" is `nn.BCELoss()(edges, edges_gt / 255)`, i.e. on the *edge probabilities* against the edge
ground truth, not on the mask; the mask only gets the soft IoU returned by its `DICE_loss`, which
flattens the whole batch into one vector with eps 1e-6 (its Dice is computed and logged, never
optimised). `official_loss` reproduces that, with our `edge_target` as the edge ground truth.

Edge ground truth: the official code uses `cv2.Canny(mask, 100, 200)`. On the tiny targets of this
task Canny is unreliable: for a 2x2 target it returns no edge at all, and for a 1 px target it
returns the 8 pixels around it but not the target. The morphological gradient (3x3 dilation minus
3x3 erosion) is never empty for a non-empty mask and always covers the target's boundary pixels,
on both sides of the boundary (2 px wide band).

All losses are computed in fp32 with autocast off, so they are safe to call on bf16/fp16 outputs.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

# Added to each image's target area before it divides the summed mask BCE: a crop with no target pixel
# would otherwise divide by zero, and a 1 px target would weigh each of its errors like a whole image.
MASK_BCE_AREA_FLOOR = 16.0
MASK_BCE_WEIGHT = 0.1

# Probabilities are clamped to [EDGE_PROB_EPS, 1 - EDGE_PROB_EPS] before BCE: log(0) is -inf.
EDGE_PROB_EPS = 1e-6


def edge_target(mask: Tensor) -> Tensor:
    """Morphological gradient of a binary mask.

    Arguments:
      mask (Tensor): (B, 1, H, W), values in {0, 1} (any dtype).

    Returns:
      (Tensor): (B, 1, H, W) float in {0, 1}: dilate3x3(mask) - erode3x3(mask). Outside the image
        counts as neutral for both operations, so a target touching the border keeps its inner edge
        there and no edge is invented along the image border.
    """
    mask = mask.float()
    # max_pool2d pads with -inf: neutral for dilation, and for erosion computed as -max(-x).
    dilated = F.max_pool2d(mask, kernel_size=3, stride=1, padding=1)
    eroded = -F.max_pool2d(-mask, kernel_size=3, stride=1, padding=1)
    return dilated - eroded


def _check_shapes(logits: Tensor, target: Tensor) -> None:
    if logits.shape != target.shape:
        raise ValueError(
            f"prediction {tuple(logits.shape)} and target {tuple(target.shape)} differ"
        )


def dice_loss(logits: Tensor, target: Tensor, eps: float = 1.0) -> Tensor:
    """Soft Dice loss, per image, averaged over the batch.

    Per-image Dice weights every image equally whatever the size of its targets (a batch-wide Dice
    would let one large target drown the 1-px ones). eps = 1 keeps it defined on empty images,
    where it then pushes all probabilities to 0.

    Arguments:
      logits (Tensor): (B, 1, H, W) mask logits.
      target (Tensor): (B, 1, H, W) in {0, 1}.

    Returns:
      (Tensor): scalar, fp32, mean over images of 1 - (2 sum(p t) + eps) / (sum p + sum t + eps).
    """
    _check_shapes(logits, target)
    with torch.autocast(device_type=logits.device.type, enabled=False):
        prob = logits.float().sigmoid().flatten(1)
        target = target.float().flatten(1)
        numerator = 2.0 * (prob * target).sum(1) + eps
        denominator = prob.sum(1) + target.sum(1) + eps
        return (1.0 - numerator / denominator).mean()


def soft_iou_loss(logits: Tensor, target: Tensor, eps: float = 1e-6) -> Tensor:
    """Soft IoU loss over the whole batch as one vector, as the official training code computes it.

    Arguments:
      logits (Tensor): (B, 1, H, W) mask logits.
      target (Tensor): (B, 1, H, W) in {0, 1}.

    Returns:
      (Tensor): scalar, fp32, 1 - (sum(p t) + eps) / (sum p + sum t - sum(p t) + eps).
    """
    _check_shapes(logits, target)
    with torch.autocast(device_type=logits.device.type, enabled=False):
        prob = logits.float().sigmoid()
        target = target.float()
        intersection = (prob * target).sum()
        union = prob.sum() + target.sum() - intersection
        return 1.0 - (intersection + eps) / (union + eps)


def edge_bce(edge_probs: Tensor, target: Tensor) -> Tensor:
    """Mean BCE between edge probabilities (B, 1, H, W) in [0, 1] and edge_target(target)."""
    _check_shapes(edge_probs, target)
    with torch.autocast(device_type=edge_probs.device.type, enabled=False):
        prob = edge_probs.float().clamp(EDGE_PROB_EPS, 1.0 - EDGE_PROB_EPS)
        return F.binary_cross_entropy(prob, edge_target(target))


def paper_loss(
    mask_logits: Tensor,
    edge_probs: Tensor,
    target: Tensor,
    edge_weight: float = 10.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Dice(mask) + edge_weight * BCE(edge, edge_target(target)), paper Sec. 3.4.

    Arguments:
      mask_logits (Tensor): (B, 1, H, W) mask logits.
      edge_probs (Tensor): (B, 1, H, W) edge probabilities in [0, 1].
      target (Tensor): (B, 1, H, W) binary mask in {0, 1}.
      edge_weight (float): lambda, 10 in the paper.

    Returns:
      (Tensor): the scalar fp32 loss to backpropagate.
      (dict): detached parts: "dice", "edge_bce".
    """
    dice = dice_loss(mask_logits, target)
    bce = edge_bce(edge_probs, target)
    total = dice + edge_weight * bce
    return total, {"dice": dice.detach(), "edge_bce": bce.detach()}


def official_loss(
    mask_logits: Tensor,
    edge_probs: Tensor,
    target: Tensor,
) -> tuple[Tensor, dict[str, Tensor]]:
    """5 * BCE(edge, edge_target(target)) + softIoU(mask), what the official code optimised.

    Arguments and returns as `paper_loss`; parts: "soft_iou", "edge_bce".
    """
    iou = soft_iou_loss(mask_logits, target)
    bce = edge_bce(edge_probs, target)
    total = 5.0 * bce + iou
    return total, {"soft_iou": iou.detach(), "edge_bce": bce.detach()}


def mask_bce(logits: Tensor, target: Tensor) -> Tensor:
    """BCE on mask logits, per image summed over its pixels and divided by its target area + MASK_BCE_AREA_FLOOR,
    averaged over the batch.

    Arguments:
      logits (Tensor): (B, 1, H, W) mask logits.
      target (Tensor): (B, 1, H, W) in {0, 1}.

    Returns:
      (Tensor): scalar, fp32.
    """
    _check_shapes(logits, target)
    with torch.autocast(device_type=logits.device.type, enabled=False):
        logits = logits.float().flatten(1)
        target = target.float().flatten(1)
        summed = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(1)
        return (summed / (target.sum(1) + MASK_BCE_AREA_FLOOR)).mean()


def paper_bce_loss(
    mask_logits: Tensor,
    edge_probs: Tensor,
    target: Tensor,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The paper's loss + MASK_BCE_WEIGHT * mask_bce(mask): Dice keeps the outline, the BCE reaches confidently
    wrong pixels, where Dice's gradient vanishes.

    Arguments and returns as `paper_loss`; parts: "dice", "edge_bce", "mask_bce".
    """
    total, parts = paper_loss(mask_logits, edge_probs, target)
    bce = mask_bce(mask_logits, target)
    return total + MASK_BCE_WEIGHT * bce, {**parts, "mask_bce": bce.detach()}


LOSSES: dict[str, Callable[..., tuple[Tensor, dict[str, Tensor]]]] = {
    "paper": paper_loss,
    "official": official_loss,
    "paper-bce": paper_bce_loss,
}
