"""Evaluation metrics: Inception features (inception.py), FID (fid.py), KID (kid.py), image metrics
(image.py) and cached reference statistics (reference.py)."""
