"""What the dashboard's pages and API do, as plain functions over a session; they raise InputError for bad input."""
