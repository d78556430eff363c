"""Directory clients (Azure AD / Microsoft Graph) that S/MIME users are read from. Nothing here imports Prefect."""
