"""Feature extraction: pooled I3D features of videos, per window or per video (``extraction``)."""
