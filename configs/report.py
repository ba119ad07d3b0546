"""The report's configuration: cnn_params.py's defaults, unchanged.

`python cnn_run.py configs/report.py` trains exactly what `python cnn_run.py` does:
Table 1's balancing, Equation 1's weights, Table 2's network (263,000 parameters),
Adam at 1e-3, batch 32, 50 epochs, 96x96 grayscale. It sets nothing on purpose;
copy it to start a configuration of your own, and set only what you change.
"""
