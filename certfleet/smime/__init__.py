"""S/MIME provisioning: users (from Azure AD profiles or imported), directory profiles and their sync."""
