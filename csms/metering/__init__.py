"""Signed meter data from calibrated (Eichrecht) meters: pure, imports no other layer."""
