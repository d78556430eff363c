"""One module per certificate authority kind."""
