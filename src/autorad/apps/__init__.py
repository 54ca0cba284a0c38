"""The applications on top of the pipeline: the command line, predict (CLI, batch, Python API), the Predictor,
the words a prediction is read with, reports, DICOM SEG/SR output, robustness checks, the whole job (pipeline),
the Python API twin of the CLI and the web viewer (serve)."""
