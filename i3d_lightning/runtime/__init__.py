"""Running I3D over many videos on one or many processes: the predict loop and its options
(``video_inference``), DataLoader workers watched by their heartbeat (``worker_watch``), the sampler and
the gathering of several processes (``distributed``), the list of skipped inputs (``skip_report``), and
SIGTERM as Ctrl-C, workers included (``termination``)."""
