"""The runtime's main process: the HTTP server, the pool of execution slots, and what it
learns from its workers. Nothing is imported here, so ``__main__`` spawns the workers before
the web server is imported."""
