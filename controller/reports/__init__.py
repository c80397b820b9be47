"""Reports for people and machines: Markdown, HTML and JSON renderings of plans. No I/O."""
