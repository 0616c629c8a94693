"""The gateway's shared state: each store is an interface, a memory backend and a Redis backend."""
