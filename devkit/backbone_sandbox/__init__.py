"""Local stand-ins for the vendor APIs (HubSpot CRM, the PSA), faithful to their wire formats.

Start it with ``python -m backbone_sandbox`` (or ``make sandbox``); it prints its base URLs.
"""
