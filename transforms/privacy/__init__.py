"""Person identifiers: the key file, identifier checks, keyed pseudonyms and the encrypted vault."""
