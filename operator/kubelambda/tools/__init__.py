"""What the developer commands do: ``kubelambda new`` writes a function's folder (scaffold),
``invoke`` calls the Lambda Invoke API (invocation), ``logs`` reads local mode's log files
(logfiles) or a cluster's pods through kubectl (kubectl). The commands in kubelambda.commands
only parse flags and call these; ``new`` and ``logs`` need nothing beyond the standard library.
"""
