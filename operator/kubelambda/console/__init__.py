"""The read-only web console: every Function's state, last hour's figures and charts, and its
latest invocations' log lines, served by ``kubelambda local`` and ``kubelambda console``."""
