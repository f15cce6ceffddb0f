"""Paired face/cartoon data: discovery, decoding, caching, augmentation, Lightning DataModule."""
