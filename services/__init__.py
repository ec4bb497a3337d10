"""Cloud-side consumer services, one package each."""
