"""Optical flow: TV-L1 (``tvl1``), flow JPEGs written (``writer``; for a folder of videos:
``extraction``) and read back (``stored``), and flow computed on the fly from decoded frames (``online``)."""
