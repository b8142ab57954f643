"""Files that other runners execute by path (spark-submit on EMR Serverless): each runs one `servingkit` command."""
