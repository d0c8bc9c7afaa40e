"""kubelambda's control plane: spec models, controller, gateway, autoscaler and local mode.

The function runtime lives apart, in ``kubelambda_runtime``, and imports none of this.
"""
