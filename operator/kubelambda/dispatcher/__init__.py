"""Consumers of the delivery store: workers that invoke accepted asynchronous events through
the gateway's invoker, retry them by their policy, and hand failures to the dead letter.
"""
