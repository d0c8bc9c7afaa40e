"""The processes kubelambda runs, one module each: `operator` (controller and autoscaler),
`gateway`, `local` (everything on this machine). They parse flags and wire the components
to a platform, and hold no logic of their own; `serving` is the wiring the gateway and
local mode share.
"""
