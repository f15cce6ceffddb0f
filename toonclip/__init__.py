"""toonclip: train face-to-cartoon image-to-image networks that run live on a phone."""

__version__ = "0.1.0"

import os as _os

# albumentations asks PyPI for a newer version at import; on a closed network that stalls.
_os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
