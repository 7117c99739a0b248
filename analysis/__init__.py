"""Analysis tools: representation similarity (CKA) and publication-quality figure export."""
