"""Providers: where records enter the pipeline (synthetic, file replay, IBKR, Redis)."""
