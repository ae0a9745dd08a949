"""Research workflows over stored runs: listing, diffs over time, the regulator's claims, reports, OONI data."""
