"""Protocol clients for CAs and servers. Nothing here imports Prefect."""
