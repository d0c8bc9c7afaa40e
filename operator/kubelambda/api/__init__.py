"""Spec models of Function and Trigger: parsing, defaults and validation, shared by every component."""
