"""Getting MyAnimeList reviews and anime metadata into the review store (crawl, parse, import)."""
