"""The Envoy gateway: its configuration (render) and a local Envoy process (run)."""
