"""When a certificate is renewed: the renewal policy and its retry schedule."""
