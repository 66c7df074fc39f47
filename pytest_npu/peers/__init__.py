"""Outside estimators, run beside the cost model as peers (never as a pipeline stage).

A peer reads the same model file and a target, and returns its own figures so reports can show
them next to pytest-npu's; nothing in the pipeline imports this package, and a missing peer is a
clear error naming the extra to install, only when its figures are asked for. ``vela``: Arm's
Ethos-U compiler and performance estimator (``pip install pytest-npu[vela]``).
"""
