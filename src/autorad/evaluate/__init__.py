"""Evaluation: metrics of a predictions table, figures, the HTML run report and run comparison.

* :func:`autorad.evaluate.metrics.compute_metrics` - pooled and per-fold metrics as a JSON-able dict
* :mod:`autorad.evaluate.plots` - confusion matrix, ROC, reliability diagram, per-fold accuracy (PNG)
* :func:`autorad.evaluate.report.write_report` - ``run_dir/report.html`` (self-contained)
* :func:`autorad.evaluate.compare.compare` - side-by-side Markdown / CSV table of several runs

Submodules are imported on use so that ``import autorad.evaluate`` stays light (matplotlib loads only for
figures).
"""
