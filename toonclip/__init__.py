"""toonclip: train face-to-cartoon image-to-image networks that run live on a phone."""

__version__ = "0.1.0"
