"""Training options as data (torch-free, so the CLI parser stays fast to import)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    data: str  # dataset root with images/ and masks/ (SIRST layout)
    split_train: str
    split_val: str
    out: str
    config: str = "paper"
    init: str | None = None  # mobile_sam.pt or an official IRSAM state_dict
    epochs: int = 500
    batch_size: int = 4
    lr: float = 1e-4
    weight_decay: float = 1e-4
    crop: int = 512
    target_crop_prob: float = 0.7
    orientations: str = "hflip"  # "hflip" (paper) or "dihedral": also vertical flips and 90-degree turns
    paste_targets: int = 0  # copy-paste: up to N training targets (<= 100 px) added to each frame
    loss: str = "paper"
    precision: str = "auto"  # auto: fp16 AMP on CUDA, bf16 on CPUs with native bf16, else fp32; fp16 off CUDA: bf16
    device: str = "auto"
    workers: int = 0
    seed: int = 0
    val_every: int = 1  # validate every N epochs (and after the last)
    ema_decay: float | None = None  # keep, validate and save an exponential moving average of the weights
    max_minutes: float | None = None  # stop cleanly (checkpoint written) after this wall time
    extra_data: list[str] = field(default_factory=list)  # more image/mask folders (e.g. synthetic)
    config_overrides: dict = field(default_factory=dict)


# Presets an ML engineer would start from: the paper's GPU recipe, the one that made the shipped
# weights (from scratch, whole 512 frames, about 5 minutes on one H200) and one sized
# for a 2-core CPU.
TRAIN_PRESETS = {
    "paper-gpu": dict(epochs=500, batch_size=4, crop=512),
    "sirst-gpu": dict(epochs=37, batch_size=8, crop=512, lr=5e-4, precision="bf16"),
    "cpu": dict(epochs=60, batch_size=8, crop=256, target_crop_prob=0.7),
}
