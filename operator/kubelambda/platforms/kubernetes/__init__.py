"""Every call to the Kubernetes API goes through this package.

``client.KubeClient`` makes blocking calls with plain-dict objects (connected as
``kubeconfig`` reads it, without the official client's models) and ``aio.AsyncKube``
runs them off the event loop for the controller; ``kinds`` names the resources kubelambda
touches. For the gateway, ``platform.KubernetesPlatform`` gives ready pods and specs from
``informer`` watches and ``waker`` asks the autoscaler for pods; for the operator,
``watches`` (kopf) is its one watch layer, ``replicas`` and ``lease`` its autoscaler's
cluster side. Import the modules themselves: this package imports nothing, so the
controller's imports stay clear of the gateway's.
"""
