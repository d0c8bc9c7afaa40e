"""The kopf operator: reconciles Function and Trigger objects into the objects that serve them."""
