"""Confirmation modals: Escape always backs out with nothing done."""
