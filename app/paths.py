"""Where the project's shipped files live."""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RESOURCES = REPO_ROOT / "resources"
DEFAULT_WEIGHTS = RESOURCES / "weights" / "irsam_paper_sirst.pt"
